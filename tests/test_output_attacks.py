"""Output attacks by approved analyst code, through the real HTTP API of a live domain: row-level data in
every encoding we know of is blocked with a reason the analyst can act on, and honest aggregates still pass.

Each attack is code an owner approved (reviewers miss things): the domain's own checks must stop it.
"""

from __future__ import annotations

import json
import re
import uuid

import httpx
import numpy as np
import pytest

from fednb.demo import data
from tests.conftest import start_live

# four groups, 'a' of 3 rows (under min_cell_count = 5)
GROUPS = "g = np.where(df.index < 3, 'a', np.where(df.index % 3 == 0, 'b', np.where(df.index % 3 == 1, 'c', 'd')))\n"


@pytest.fixture(scope="module")
def target(tmp_path_factory, alice_token):
    root = tmp_path_factory.mktemp("outputs")
    frame = data.hospital("hospital-a")
    strict = start_live(root, "strict", frame, alice_token,
                        policy_edits={"max_rounds = 200": "max_rounds = 3"})
    lenient = start_live(root, "lenient", frame, alice_token,
                         policy_edits={"unchecked_output = []": 'unchecked_output = ["patients"]',
                                       "show_error_text = false": "show_error_text = true"})
    with httpx.Client(base_url=strict.url, timeout=60) as a, httpx.Client(base_url=lenient.url, timeout=60) as b:
        yield {"strict": (strict, a), "lenient": (lenient, b), "frame": frame}
    strict.server.stop()
    lenient.server.stop()


def _approved(live, client, body: dict) -> str:
    submitted = client.post("/v1/requests", headers={"Authorization": f"Bearer {live.token}"},
                            json={**body, "dataset": "patients", "idempotency_key": uuid.uuid4().hex})
    assert submitted.status_code == 201, submitted.text
    rid = submitted.json()["id"]
    approved = client.post(f"/v1/requests/{rid}/approve", headers={"Authorization": f"Bearer {live.owner_token}"},
                           json={"reason": "looks like aggregates"})
    assert approved.status_code == 200, approved.text
    return rid


def run_function(target, body: str, where: str = "strict") -> dict:
    """Submit ``def job(df): <body>`` as the analyst, approve it as the owner, wait for the end."""
    live, client = target[where]
    src = "def job(df):\n" + "\n".join("    " + line for line in body.strip().splitlines()) + "\n"
    rid = _approved(live, client, {"kind": "function", "name": "job", "code": src})
    final = client.get(f"/v1/requests/{rid}?wait=30", headers={"Authorization": f"Bearer {live.token}"}).json()
    assert final["status"] in ("done", "blocked", "failed"), final
    return final


# (id, body of `def job(df):`, what the blocked reason must say)
ROW_LEVEL = [
    ("CSV in a string", "return df.to_csv(index=False)", "free text"),
    ("JSON in a string", "return df.to_json()", "free text"),
    ("rows as dict keys", "return {f'{a},{b:.1f}': None for a, b in zip(df.age, df.bmi)}", "free text"),
    ("a column of category labels", "return df.sex.tolist()", "free text"),
    ("rows as column labels", "return pd.DataFrame(columns=[f'{a}/{b:.1f}' for a, b in zip(df.age, df.bmi)])",
     "free text"),
    ("rows as index labels", "return pd.Series(None, index=df.sex + df.age.astype(str), dtype=object)",
     "number|free text"),
    ("rows as the groups of a table", "return fednb.table(df.assign(who=df.age.astype(str) + '/' + "
     "df.bmi.astype(str)), by='who')", "groups of a fednb.table have fewer than"),
    ("plain numbers: ten patients' ages", "return df.age.head(10).tolist()", "cannot check"),
    ("float digit packing", "return float(''.join(f'{a:03d}' for a in df.age.head(5)))", "cannot check"),
    ("one value per row over many small stats", "return [fednb.stat(df.bmi.iloc[[i]]) for i in range(50)]",
     "rows behind a fednb.stat value number fewer than 10"),
    ("one value per row as a table of means", "return fednb.table(df.assign(r=df.index), by='r', value='bmi', "
     "agg='mean')", "groups of a fednb.table have fewer than"),
    ("many overlapping small groups", "return [fednb.stat(df.bmi.iloc[i:i + 20]) for i in range(0, 30)]",
     "differ by fewer than 10 rows"),
    ("a total less one row", "return [fednb.stat(df, 'count'), fednb.stat(df.iloc[1:], 'count')]",
     "differ by fewer than 10 rows"),
    ("a hidden cell recovered from two totals", GROUPS + "t = fednb.table(df.assign(g=g), by='g')\n"
     "return [t, fednb.stat(df, 'count'), fednb.stat(df[g != 'a'], 'count')]", r"differ by fewer than 10 rows"),
    ("forged n in a fednb.stat", "s = fednb.stat(df.bmi.iloc[:1])\ns.n = 1000\nreturn s",
     "rows behind a fednb.stat value number fewer than 10"),
    ("one row counted many times", "s = fednb.stat(df.bmi.iloc[:20])\ns.rows = [s.rows[0]] * 20\n"
     "s.values = [s.values[0]] * 20\nreturn s", "same row more than once"),
    ("a dataset column's values replaced", "s = fednb.stat(df.bmi.iloc[:20])\n"
     "s.values = [s.values[0]] + [0.0] * 19\nreturn s", "are not the dataset's"),
    ("one row dominating a sum", "x = df.bmi.where(df.index == 0, 0.01).rename('x')\n"
     "return fednb.stat(x.iloc[:50], 'sum')", "dominance rule"),
    ("forged labels of a dataset column", "t = fednb.table(df, by='sex')\nt.groups = [[f'{df.age[0]}'] for g in "
     "t.groups]\nreturn t", "groups handed back for column 'sex' are not the dataset's"),
]


@pytest.mark.parametrize("name,body,reason", ROW_LEVEL, ids=[a[0] for a in ROW_LEVEL])
def test_row_level_output_is_blocked_in_every_encoding(target, name, body, reason):
    final = run_function(target, body)
    assert final["status"] == "blocked", (name, final["status"], final.get("reason"), final.get("result"))
    assert re.search(reason, final["reason"]), (name, final["reason"])
    assert final["result"] is None
    ages = {str(a) for a in target["frame"].age.head(5)}
    assert not any(re.search(rf"\b{a}\b", final["reason"]) for a in ages - {"10", "20", "50"}), final["reason"]


def test_digits_packed_into_a_checked_mean_are_rounded_away(target):
    """A mean the domain computes from per-row values the function derived: all rows carry the same packed
    number. It passes the rules (no row dominates), so the domain keeps 4 significant digits: the second and
    later values packed into it do not survive."""
    frame = target["frame"]
    packed = float("".join(f"{a:03d}" for a in frame.age.head(4)))
    final = run_function(target, "p = float(''.join(f'{a:03d}' for a in df.age.head(4)))\n"
                                  "return fednb.stat((df.bmi * 0 + p).rename('packed'), 'mean')")
    assert final["status"] == "done", final
    released = final["result"]
    assert released != packed and abs(released - packed) / packed < 1e-3
    assert len(f"{released:.12g}".replace(".", "").rstrip("0")) <= 4


def test_error_text_carries_no_private_value(target):
    final = run_function(target, "ages = ','.join(str(a) for a in df.age.head(30))\nraise ValueError(ages)")
    assert final["status"] == "failed"
    assert final["reason"] == "your code raised ValueError (line 3 of your function)"
    custom = run_function(target, "E = type('Age' + str(df.age[0]), (Exception,), {})\nraise E('x')")
    assert custom["reason"] == "your code raised an exception of a type of its own (line 3 of your function)"
    shown = run_function(target, "raise ValueError('allowed here')", where="lenient")
    assert shown["reason"] == "your code raised ValueError: allowed here (line 2 of your function)"


def test_honest_table_passes_with_the_domain_s_own_counts(target):
    """The README's readmission_by_risk, as a fednb.table: counts and rates computed by the domain."""
    frame = target["frame"]
    final = run_function(target, "return fednb.table(df, by=['smoker', 'diabetes'], value='readmitted', "
                                 "agg='mean')")
    assert final["status"] == "done", final.get("reason")
    from fednb import codec

    table = codec.decode(final["result"])
    expected = frame.groupby(["smoker", "diabetes"])["readmitted"].agg(["size", "mean"])
    assert table["n"].tolist() == expected["size"].tolist()
    np.testing.assert_allclose(table["mean"].to_numpy(dtype=float), expected["mean"].to_numpy(), rtol=1e-3)
    assert final["disclosure"]["checked"] == ["readmitted: verified against the dataset"]


def test_a_small_cell_and_its_secondary_partner_are_hidden_even_with_the_total_released(target):
    final = run_function(target, GROUPS + "return [fednb.table(df.assign(g=g), by='g'), fednb.stat(df, 'count')]")
    assert final["status"] == "done", final.get("reason")
    from fednb import codec

    table, total = codec.decode(final["result"])
    assert "a" not in table.index and len(table) == 2 and final["disclosure"]["suppressed_cells"] == 2
    assert total - table["n"].sum() > 10  # the two hidden cells together, never the small one alone


def test_unchecked_output_only_where_the_owner_allows_it(target):
    assert run_function(target, "return float(df.age.mean())")["status"] == "blocked"
    final = run_function(target, "return {'mean_age': float(df.age.mean())}", where="lenient")
    assert final["status"] == "done" and final["disclosure"]["unchecked"] is True
    info = target["lenient"][1].get("/v1/requests/" + final["id"],
                                    headers={"Authorization": f"Bearer {target['lenient'][0].token}"}).json()
    assert info["status"] == "done"


# -- training: metrics and failing rounds --------------------------------------------------------------
TRAINING = '''\
class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Linear(1, 1)

def train(model, df, **config):
    MODE
'''


def _weights(number: int) -> bytes:
    from safetensors.numpy import save

    from fednb import tensors

    return save({"w.weight": np.zeros((1, 1), np.float32), "w.bias": np.zeros(1, np.float32)},
                metadata={tensors.METADATA_KEY: json.dumps({"round": number})})


def _round(target, rid: str, number: int) -> httpx.Response:
    live, client = target["strict"]
    return client.post(f"/v1/requests/{rid}/rounds?wait=30", content=_weights(number),
                       headers={"Authorization": f"Bearer {live.token}", "content-type": "application/octet-stream"})


def _round_state(target, rid: str, number: int) -> dict:
    live, client = target["strict"]
    return client.get(f"/v1/requests/{rid}/rounds/{number}?wait=30",
                      headers={"Authorization": f"Bearer {live.token}"}).json()


def _training(target, mode: str) -> str:
    pytest.importorskip("torch")
    live, client = target["strict"]
    return _approved(live, client, {"kind": "training", "name": "train", "code": TRAINING.replace("MODE", mode),
                                    "args": {"model": "M"}, "limits": {"max_rounds": 3}})


def test_metrics_carrying_rows_are_blocked(target):
    rid = _training(target, "return {f'a{i}': float(a) for i, a in enumerate(df.age.head(40))}")
    assert _round(target, rid, 1).status_code in (200, 201, 202)
    state = _round_state(target, rid, 1)
    assert state["status"] == "blocked" and "at most 16 may leave" in state["reason"], state
    rid = _training(target, "return {'loss': 0.5, 'rows': df.age.head(40).tolist()}")
    _round(target, rid, 1)
    state = _round_state(target, rid, 1)
    assert state["status"] == "blocked" and "is not one finite number" in state["reason"], state


def test_failing_rounds_leak_no_text_and_use_up_the_round_budget(target):
    rid = _training(target, "raise ValueError(','.join(str(a) for a in df.age.head(30)))")
    reasons = []
    for _ in range(3):  # the same failing round, again and again
        _round(target, rid, 1)
        state = _round_state(target, rid, 1)
        assert state["status"] == "failed", state
        reasons.append(state["reason"])
    assert all(re.fullmatch(r"your code raised ValueError \(line [78] of your function\)", r) for r in reasons), reasons
    refused = _round(target, rid, 1)
    assert refused.status_code == 409 and "round budget of 3" in refused.text and "failed and blocked" in refused.text


# -- the owner sees which datasets allow unchecked output -------------------------------------------------
@pytest.mark.parametrize("edits,shown", [({}, False), ({"unchecked_output = []": 'unchecked_output = ["patients"]'}, True)])
def test_the_owner_cli_and_review_panel_show_unchecked_output(tmp_path, monkeypatch, edits, shown):
    import asyncio

    from click.testing import CliRunner

    from fednb.cli import main as cli
    from fednb.jupyter.owner import OwnerService
    from fednb.models import RequestIn
    from tests.conftest import make_domain

    monkeypatch.setenv("FEDNB_HOME", str(tmp_path / "home"))
    d = make_domain(tmp_path, "clinic", data.hospital("hospital-a"), policy_edits=edits)
    req, _ = d.receive("alice", RequestIn(dataset="patients", kind="function", name="f",
                                         code="def f(df):\n    return 1\n"))
    d.close()
    listing = CliRunner().invoke(cli, ["domain", "requests", str(tmp_path / "clinic")])
    assert listing.exit_code == 0 and req.id in listing.output
    assert ("[UNCHECKED OUTPUT ALLOWED]" in listing.output) is shown
    as_json = json.loads(CliRunner().invoke(cli, ["domain", "requests", str(tmp_path / "clinic"), "--json"]).output)
    assert as_json[0]["unchecked_output"] is shown
    show = CliRunner().invoke(cli, ["domain", "show", str(tmp_path / "clinic"), req.id]).output
    assert ("NOT CHECKED" in show) is shown
    detail = asyncio.run(OwnerService("default", [{"path": str(tmp_path / "clinic")}]).detail("clinic", req.id))
    assert detail["unchecked_output"] is shown
    assert detail["output_check"].startswith("NOT CHECKED" if shown else "checked")


def test_a_failing_dp_round_is_charged_to_the_privacy_budget(tmp_path, alice_token):
    """Under DP, a round whose code fails on the data tells the analyst something outside the noise."""
    pytest.importorskip("torch")
    from torch import nn

    import fednb
    import fednb.learn as fl
    from tests.conftest import live_domains, owners_approving

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Linear(1, 2)

        def forward(self, x):
            return self.w(x)

    def leaky(df, **config):
        raise ValueError(str(df.age[0]))

    policy = {'training = "none"': 'training = "dp"', "delta = 1e-6": "delta = 1e-4"}
    frames = {name: data.hospital(name) for name in ("hospital-a", "hospital-b")}
    with live_domains(tmp_path, frames, alice_token, policy_edits=policy) as live, owners_approving(live):
        fed = fednb.connect([d.url for d in live], token=alice_token)
        trainer = fl.Trainer(Net(), leaky, data=fed.dataset("patients"), rounds=1, progress=False,
                             dp=fl.DPSGD(epsilon=1.0, delta=1e-5, batch_size=50))
        with pytest.raises(fednb.FednbError):  # no domain released a round
            trainer.fit()
        fed.close()
        dom = live[0].domain()
        part = dom.requests()[0]
        failed = dom.round(part.id, 1)
        spends = [e.payload for e in dom.audit_entries() if e.action == "spend" and e.object_id == part.id]
        dom.close()
    assert failed.status == "failed"
    assert re.fullmatch(r"your code raised ValueError \(line \d+ of your function\)", failed.reason), failed.reason
    assert len(spends) == 1 and spends[0]["epsilon"] > 0


def test_two_approved_functions_whose_rows_differ_by_one_are_differencing(target):
    """Each result passes on its own; their difference is one patient's BMI. The domain remembers the
    rows behind every released fednb.stat (as it does for built-ins) and refuses the second, naming the
    first; other code over exactly the same rows still passes."""
    everyone = run_function(target, "return fednb.stat(df.bmi.iloc[40:140], 'sum')")
    assert everyone["status"] == "done", everyone
    same_rows = run_function(target, "rows = df.iloc[40:140]\nreturn fednb.stat(rows.bmi, 'sum')")
    assert same_rows["status"] == "done", same_rows
    all_but_one = run_function(target, "return fednb.stat(df.bmi.iloc[41:140], 'sum')")
    assert all_but_one["status"] == "blocked", all_but_one
    assert everyone["id"] in all_but_one["reason"] and "differencing" in all_but_one["reason"]
