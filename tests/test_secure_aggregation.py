"""Secure aggregation: the analyst learns the sum, exactly, and nothing about one domain's input; a
domain that vanishes mid-protocol is unmasked from the others' shares; the domains enforce the rules.

The protocol runs through the real client (:class:`SecureSum`) and the real domain code, in process
for the protocol's corner cases and through real servers (with a real kill -9) where it matters."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import fednb
from fednb.demo import data
from fednb.domain import Domain
from fednb.domain.release.secure_aggregation import SecureAggregation
from fednb.domain.release.trusted_peers import key_message, pin_each_other
from fednb.domain.review.requests import Conflict
from fednb.errors import DomainError, DomainUnavailable, FednbError, InvalidInput, NotEnoughDomains
from fednb.federated.secure_sum import Member, SecureSum, exchange_keys_together
from fednb.models import RequestIn
from fednb.privacy import fixedpoint
from tests.conftest import live_domains, owners_approving

# -- in process: the real client against the real domain code, without HTTP ---------------------


class LocalClient:
    """Stands in for a DomainClient: calls the domain's secure-aggregation service directly."""

    def __init__(self, name: str, service: SecureAggregation):
        self.name, self.service, self.down = name, service, False

    async def call(self, method, path, *, json=None, **_):
        if self.down:
            raise DomainUnavailable(self.name, "cannot reach it (stopped by the test)")
        if path == "/v1/secagg":  # several key-exchange steps in one call
            return {"results": self.service.batch("alice", json["steps"])}
        _, _, _, session, step = path.split("/")
        try:
            return getattr(self.service, step)("alice", session, json)
        except FednbError as exc:
            raise DomainError(self.name, str(exc), status=409 if isinstance(exc, Conflict) else 400) from None


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """Four domains (not served) with a finished secure job each, whose secret vectors we choose."""
    root = tmp_path_factory.mktemp("secagg")
    frame = data.hospital("hospital-a")
    frame.to_csv(root / "h.csv", index=False)
    rng = np.random.default_rng(1)
    vectors = [np.linspace(-500, 500, 3000) * (i + 1) + rng.normal(0, 1, 3000) for i in range(4)]
    domains = []
    for i in range(len(vectors)):
        d = Domain.init(root / f"d{i}", f"d{i}")
        d.add_dataset(root / "h.csv", "patients")
        d.close()
    pin_each_other([root / f"d{i}" for i in range(len(vectors))])
    for i in range(len(vectors)):
        d = Domain(root / f"d{i}")
        domains.append((d, SecureAggregation(d)))
    yield domains, vectors
    for d, _ in domains:
        d.close()


def _session(local):
    """A new secure request on each domain (an input enters one sum only), done with its vector."""
    domains, vectors = local
    clients, members = {}, {}
    for i, ((d, service), x) in enumerate(zip(domains, vectors)):
        req, _ = d.receive("alice", RequestIn(dataset="patients", kind="builtin", name="sum",
                                             args={"column": "age", "secure": True}))
        with d.store.transaction() as tx:  # as if the job had run and kept this vector secret
            tx.execute("UPDATE jobs SET status = 'done', result_blob = ? WHERE request_id = ?",
                       (x.astype("<f8").tobytes(), req.id))
        clients[f"d{i}"] = LocalClient(f"d{i}", service)
        members[f"d{i}"] = Member(clients[f"d{i}"], req.id)
    return SecureSum(members), clients


def test_the_sum_is_exact_and_one_masked_input_says_nothing(local):
    from fednb.client.http import run

    domains, vectors = local
    s, _ = _session(local)
    result = s.run()
    np.testing.assert_allclose(result.total, np.sum(vectors, axis=0), atol=4 * 2.0**-24)
    assert result.included == ["d0", "d1", "d2", "d3"] and not result.dropped
    y = s.masked[1]  # what the analyst holds of domain d0: uniform on the ring, unrelated to its input
    assert stats.kstest(y.astype(float) / 2.0**64, "uniform").pvalue > 1e-4
    assert abs(np.corrcoef(fixedpoint.decode(y), vectors[0])[0, 1]) < 4 / math.sqrt(y.size)
    # a domain answers the unmask step once: another set of survivors (to subtract sums) is refused
    with pytest.raises(DomainError, match="answers once"):
        run(s.members[1].client.call("POST", f"/v1/secagg/{s.session}/unmask", json={"survivors": [1, 2, 3]}))
    # and an input enters one sum only: a second session over fewer domains cannot be subtracted
    again = SecureSum({name: Member(m.client, m.request_id) for name, m in
                       zip(["d0", "d1", "d2"], list(s.members.values())[:3])})
    with pytest.raises(NotEnoughDomains) as err:
        again.run()
    assert all("already unmasked" in why for why in err.value.problems.values())


def test_a_domain_that_vanishes_after_its_shares_is_unmasked_from_the_others(local):
    domains, vectors = local
    s, clients = _session(local)
    from fednb.client.http import run

    run(s.advertise())
    run(s.share())
    clients["d2"].down = True  # gone before sending its masked input: its pairwise masks must go
    run(s.collect())
    total = run(s.unmask())
    np.testing.assert_allclose(total, vectors[0] + vectors[1] + vectors[3], atol=4 * 2.0**-24)
    assert "d2" in s.dropped


def test_a_domain_that_vanishes_after_masking_stays_in_the_sum(local):
    domains, vectors = local
    s, clients = _session(local)
    from fednb.client.http import run

    run(s.advertise())
    run(s.share())
    run(s.collect())
    clients["d3"].down = True  # its masked input arrived; its self mask comes back from the shares
    total = run(s.unmask())
    np.testing.assert_allclose(total, np.sum(vectors, axis=0), atol=4 * 2.0**-24)


def test_too_many_drop_outs_stop_the_sum_without_revealing_anything(local):
    s, clients = _session(local)
    from fednb.client.http import run

    run(s.advertise())
    run(s.share())
    clients["d1"].down = clients["d2"].down = clients["d3"].down = True
    with pytest.raises(NotEnoughDomains):
        run(s.collect())


def test_sessions_keyed_together_sum_exactly_and_fail_alone(local):
    """Training keys its coming rounds in one call per domain and step: each session still sums
    exactly, a session refused by one domain loses only that domain, and a domain down during the
    exchange is dropped from every session."""
    from fednb.client.http import run

    domains, vectors = local
    sessions = [_session(local)[0] for _ in range(3)]
    foreign = domains[1][0].receive("bob", RequestIn(dataset="patients", kind="builtin", name="sum",
                                                    args={"column": "age", "secure": True}))[0]
    sessions[1].members[2].request_id = foreign.id  # alice cannot sum bob's request on d1
    assert run(exchange_keys_together(sessions)) == {}
    assert "d1" in sessions[1].dropped and "no request" in sessions[1].dropped["d1"]
    assert not sessions[0].dropped and not sessions[2].dropped
    for s, expected in ((sessions[0], np.sum(vectors, axis=0)), (sessions[2], np.sum(vectors, axis=0)),
                        (sessions[1], vectors[0] + vectors[2] + vectors[3])):
        run(s.collect())
        np.testing.assert_allclose(run(s.unmask()), expected, atol=4 * 2.0**-24)

    more = [_session(local) for _ in range(2)]
    more[0][1]["d3"].down = True
    assert run(exchange_keys_together([s for s, _ in more])) == {}
    assert all("d3" in s.dropped and "keys step" in s.dropped["d3"] for s, _ in more)
    broken = [_session(local) for _ in range(2)]
    for name in ("d1", "d2", "d3"):
        broken[0][1][name].down = True
    failed = run(exchange_keys_together([s for s, _ in broken]))
    assert list(failed) == [0, 1] and isinstance(failed[0], NotEnoughDomains)


def test_a_batch_of_key_steps_is_checked_as_a_whole(local):
    service = local[0][0][1]
    for steps in (None, [], [{"session": "x" * 20, "step": "masked", "body": {}}],
                  [{"session": "x" * 20, "step": "keys"}], [{"step": "keys", "body": {}}] * 65):
        with pytest.raises(InvalidInput, match="steps|each step"):
            service.batch("alice", steps)
    answer = service.batch("alice", [{"session": "short", "step": "keys", "body": {}}])
    assert answer == [{"error": "a session id is 16-64 letters, digits, '-' or '_'", "status": 400}]


def test_domains_refuse_what_would_expose_one_input(local):
    s, _ = _session(local)
    svc = s.members[1].client.service
    base = {"request_id": s.members[1].request_id, "round": None, "participants": 4, "index": 1}
    with pytest.raises(InvalidInput, match="more than half"):
        svc.keys("alice", "s" * 20, {**base, "threshold": 2})
    with pytest.raises(InvalidInput, match="at least 2 domains"):
        svc.keys("alice", "t" * 20, {**base, "participants": 1, "threshold": 1})
    with pytest.raises(fednb.errors.NotFound):  # another analyst's request does not exist for you
        svc.keys("mallory", "u" * 20, {**base, "threshold": 3})
    keys = svc.keys("alice", "v" * 20, {**base, "threshold": 3})
    with pytest.raises(InvalidInput, match="own keys"):
        svc.shares("alice", "v" * 20, {"keys": {"1": {**keys, "c_pk": "00" * 32}}})
    with pytest.raises(InvalidInput, match="signed"):
        svc.shares("alice", "v" * 20, {"keys": {"1": {"c_pk": keys["c_pk"], "s_pk": keys["s_pk"]}}})
    with pytest.raises(Conflict, match="masked input"):
        svc.unmask("alice", "v" * 20, {"survivors": [1, 2, 3]})


# -- through real servers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trio(tmp_path_factory, alice_token):
    frames = {name: data.hospital(src) for name, src in
              [("hosp-1", "hospital-a"), ("hosp-2", "hospital-b"), ("hosp-3", "hospital-a")]}
    with live_domains(tmp_path_factory.mktemp("secagg-live"), frames, alice_token,
                      policy_edits={"warm_torch = false": "warm_torch = true"}) as live:
        yield live


class Refused(Exception):
    """The domain stopped the session: the exception of the step that refused, and that step."""


def play_the_other_domains(client, request_id: str, forge) -> np.ndarray:
    """What a lying analyst does against one domain (index 1 of 3): it makes the X25519 keys of
    "domains" 2 and 3 itself (``forge(j, c_pk, s_pk, sid)`` returns how it presents them), opens
    the shares the domain seals for them, rebuilds the domain's self-mask seed, sends shares of its
    own, and strips every mask from the domain's masked input. Returns that input, or raises
    :class:`Refused` naming the step the domain stopped at."""
    import base64
    import json
    import secrets

    from fednb.client.http import run
    from fednb.privacy import masking, shamir

    sid = secrets.token_urlsafe(18)

    def call(step: str, body: dict) -> dict:
        try:
            return run(client.call("POST", f"/v1/secagg/{sid}/{step}", json=body))
        except DomainError as exc:
            raise Refused(step, exc.message) from None

    mine = call("keys", {"request_id": request_id, "round": None, "participants": 3, "index": 1, "threshold": 2})
    c_pk, s_pk, salt = bytes.fromhex(mine["c_pk"]), bytes.fromhex(mine["s_pk"]), sid.encode()
    fake = {j: (masking.KeyPair(), masking.KeyPair()) for j in (2, 3)}
    keys = {"1": mine} | {str(j): forge(j, c.public, s.public, sid) for j, (c, s) in fake.items()}
    sealed = call("shares", {"keys": keys})["shares"]
    opened = {j: json.loads(masking.unseal(fake[j][0].agree(c_pk), salt, 1, j, bytes.fromhex(sealed[str(j)])))
              for j in (2, 3)}
    seed = shamir.combine({j: int(o["b"], 16) for j, o in opened.items()}).to_bytes(32, "big")
    bundle = json.dumps({"s": "1", "b": "1"}).encode()
    boxes = {str(j): masking.seal(fake[j][0].agree(c_pk), salt, j, 1, bundle).hex() for j in (2, 3)}
    answer = call("masked", {"shares": boxes})
    y = np.frombuffer(base64.b64decode(answer["masked"]), dtype="<u8").astype(np.uint64)
    y = y - masking.self_mask(seed, salt, y.size)
    for j in (2, 3):
        y = y - masking.signed_pair_mask(1, j, fake[j][1].agree(s_pk), salt, y.size)
    return fixedpoint.decode(y)


def _unsigned(j, c_pk, s_pk, sid):
    return {"c_pk": c_pk.hex(), "s_pk": s_pk.hex()}


def _signed_by(identity):
    def forge(j, c_pk, s_pk, sid):
        message = key_message(sid, None, 3, 2, j, c_pk, s_pk)
        return {**_unsigned(j, c_pk, s_pk, sid), "identity": identity.public_key.hex(),
                "signature": identity.sign(message).hex()}
    return forge


@pytest.mark.parametrize("how", ["unsigned", "signed by the analyst", "signed by an unpinned domain"])
def test_an_analyst_posing_as_the_other_domains_unmasks_nothing(trio, alice_token, tmp_path, how):
    """Bonawitz et al. 2017 §6: the analyst relays the keys, so it can offer a domain keys it made
    itself. hosp-1 must refuse to seal shares for them: else the analyst opens them, rebuilds the
    masks and reads hosp-1's own count and sum of ages."""
    from fednb.domain.identity import load_or_create

    fed = fednb.connect([trio[0].url], token=alice_token)
    try:
        req = fed.dataset("patients")._builtin("sum", {"column": "age"}, None, 30, secure=True)
        part = req.parts[0]
        own = [len(trio[0].frame), trio[0].frame.age.sum()]
        if how == "unsigned":
            forge = _unsigned
        elif how == "signed by the analyst":
            forge = _signed_by(load_or_create(tmp_path))  # a key pair the analyst made
        else:
            outsider = Domain.init(tmp_path / "outsider", "outsider")  # a real domain nobody pinned
            forge = _signed_by(outsider.identity)
            outsider.close()
        try:
            recovered = play_the_other_domains(part.client, part.id, forge)
        except Refused as exc:
            step, why = exc.args
        else:
            pytest.fail(f"the analyst unmasked hosp-1 alone: {recovered} (its own count and sum: {own})")
        assert step == "shares" and ("not pinned" if how != "unsigned" else "signed") in why, why
    finally:
        fed.close()


def test_a_replayed_or_moved_key_message_is_refused(trio, alice_token):
    """A peer's genuine signed keys, taken from another session or given another index, are refused:
    the signature binds the session, round, step and index."""
    from fednb.client.http import run

    fed = fednb.connect([d.url for d in trio], token=alice_token)
    try:
        req = fed.dataset("patients")._builtin("sum", {"column": "age"}, None, 30, secure=True)
        honest = SecureSum({p.domain: Member(p.client, p.id) for p in req.parts})
        run(honest.advertise())  # a real session: hosp-2 and hosp-3 sign their keys for it
        other = SecureSum({p.domain: Member(p.client, p.id) for p in req.parts})
        run(other.advertise())
        replays = {
            "from another session": {"1": other.keys[1], "2": honest.keys[2], "3": other.keys[3]},
            "at another index": {"1": other.keys[1], "2": other.keys[3], "3": other.keys[2]},
            "with another key": {"1": other.keys[1], "2": {**other.keys[2], "s_pk": honest.keys[2]["s_pk"]},
                                 "3": other.keys[3]},
        }
        for what, keys in replays.items():
            with pytest.raises(DomainError, match="does not hold|not between") as err:
                run(other.members[1].client.call("POST", f"/v1/secagg/{other.session}/shares", json={"keys": keys}))
            assert err.value.domain == "hosp-1", what
        with pytest.raises(DomainError, match="shares step"):  # and nothing masked leaves without them
            run(other.members[1].client.call("POST", f"/v1/secagg/{other.session}/masked", json={"shares": {}}))
        run(honest.share())  # the untouched messages still go through
        run(honest.collect())
        total = run(honest.unmask())
        assert total[0] == pytest.approx(sum(len(d.frame) for d in trio), abs=1e-4)
    finally:
        fed.close()


def test_a_secure_only_dataset_refuses_the_clear_sum(trio, alice_token):
    """With ``secure_only``, hosp-1's sums leave only inside a secure sum with 2 pinned peers."""
    from fednb.client.http import run

    policy = trio[0].path / "policy.toml"
    original = policy.read_text()
    policy.write_text(original.replace("# [secure_aggregation.datasets.patients]\n# secure_only = true",
                                       "[secure_aggregation.datasets.patients]\nsecure_only = true"))
    assert policy.read_text() != original
    trio[0].server.restart()
    fed = fednb.connect([d.url for d in trio], token=alice_token)
    try:
        ds = fed.dataset("patients")
        for clear in (lambda: ds.sum("age", min_domains=3), lambda: ds.count(min_domains=3),
                      lambda: ds.mean("age", min_domains=3), lambda: ds.histogram("age", [20, 40, 60, 80], min_domains=3)):
            with pytest.raises(NotEnoughDomains) as err:
                clear()
            assert list(err.value.problems) == ["hosp-1"] and "secure-only" in err.value.problems["hosp-1"]
        shown = {d: run(c.call("GET", "/v1/datasets/patients/budget"))["secure_only"] for d, c in ds.clients.items()}
        assert shown == {"hosp-1": True, "hosp-2": False, "hosp-3": False}  # analysts can see the rule
        truth = pd.concat([d.frame for d in trio])
        assert ds.sum("age", secure=True).value == pytest.approx(truth.age.sum(), abs=1e-4)
        # with one peer only, the sum minus that peer's own input would be hosp-1's: refused
        req = ds._builtin("sum", {"column": "age"}, None, 30, secure=True)
        pair = SecureSum({p.domain: Member(p.client, p.id) for p in req.parts[:2]})
        with pytest.raises(NotEnoughDomains) as err:
            run(pair.run_async())
        assert "at least 2 pinned peer" in err.value.problems["hosp-1"]
    finally:
        policy.write_text(original)
        trio[0].server.restart()
        fed.close()


def test_trust_pins_a_roster_and_refuses_an_altered_one(tmp_path):
    from click.testing import CliRunner

    from fednb.cli import main

    runner = CliRunner()
    for name in ("a", "b", "c"):
        Domain.init(tmp_path / name, name).close()
    entries = [runner.invoke(main, ["domain", "trust", str(tmp_path / n), "--entry", f"http://{n}.example"]).output
               for n in ("a", "b", "c")]
    roster = tmp_path / "roster.toml"
    roster.write_text("\n".join(entries))
    result = runner.invoke(main, ["domain", "trust", str(tmp_path / "a"), str(roster)])
    assert result.exit_code == 0 and "2 pinned peers" in result.output and "http://b.example" in result.output
    from fednb.domain.audit import report, report_html

    d = Domain(tmp_path / "a")
    trust_rows = [e.payload for e in d.audit_entries() if e.action == "secagg" and e.payload.get("step") == "trust"]
    published = report.build(d)["secure_aggregation"]  # the transparency report names who a trusts
    d.close()
    assert [p["name"] for p in trust_rows[-1]["peers"]] == ["b", "c"]
    assert published["fingerprint"] == d.identity.fingerprint and d.identity.fingerprint in entries[0]
    assert [(p["name"], p["fingerprint"]) for p in published["pinned_peers"]] == \
        [(n, Domain(tmp_path / n).identity.fingerprint) for n in ("b", "c")]
    assert published["pinned_peers"][0]["fingerprint"] in report_html.render(report.build(Domain(tmp_path / "a")))
    altered = roster.read_text().replace(entries[1].split("public_key = \"")[1][:8], "00000000", 1)
    roster.write_text(altered)
    result = runner.invoke(main, ["domain", "trust", str(tmp_path / "a"), str(roster)])
    assert result.exit_code == 2 and "fingerprint" in result.output and "Traceback" not in result.output


def test_secure_statistics_equal_the_plain_ones(trio, alice_token):
    fed = fednb.connect([d.url for d in trio], token=alice_token)
    ds = fed.dataset("patients")
    truth = pd.concat([d.frame for d in trio])
    s = ds.sum("systolic_bp", secure=True)
    assert s.value == pytest.approx(truth.systolic_bp.sum(), abs=1e-4)
    assert s.by_domain["domain"].tolist() == ["hosp-1", "hosp-2", "hosp-3"] and "secure aggregation" in s.notes[0]
    assert ds.count(secure=True).value == len(truth)
    assert ds.mean("age", where="sex == 'F'", secure=True).value == pytest.approx(truth[truth.sex == "F"].age.mean())
    # the analyst's request shows no per-domain number, and the domains log the unmasking
    assert all(set(p.state["result"]) == {"secure", "fields"} for p in s.request.parts)
    dom = trio[0].domain()
    assert [e.action for e in dom.audit_entries()].count("secagg") >= 3
    dom.close()
    with pytest.raises(InvalidInput, match="cannot be securely aggregated"):
        ds._builtin("variance", {"column": "age"}, None, 10, secure=True)
    fed.close()


def test_a_killed_domain_does_not_spoil_the_secure_sum(trio, alice_token):
    fed = fednb.connect([d.url for d in trio], token=alice_token)
    ds = fed.dataset("patients")
    req = ds._builtin("sum", {"column": "age"}, None, 30, secure=True)
    s = SecureSum({p.domain: Member(p.client, p.id) for p in req.parts})
    from fednb.client.http import run

    run(s.advertise())
    run(s.share())
    trio[2].server.kill()  # kill -9 after it sent its shares: its keys die with it
    try:
        run(s.collect())
        total = run(s.unmask())
        assert total[1] == pytest.approx(trio[0].frame.age.sum() + trio[1].frame.age.sum(), abs=1e-4)
        assert total[0] == pytest.approx(len(trio[0].frame) + len(trio[1].frame), abs=1e-4)
        assert list(s.dropped) == ["hosp-3"] and "masked" in s.dropped["hosp-3"]
    finally:
        trio[2].server.restart()
        fed.close()


def test_secure_federated_averaging_equals_the_plain_one(trio, alice_token):
    torch = pytest.importorskip("torch")
    import fednb.learn as fl
    from tests.secure_models import Line

    fed = fednb.connect([d.url for d in trio], token=alice_token)
    ds = fed.dataset("patients")
    try:
        with owners_approving(trio):
            models = {}
            for secure in (False, True):
                torch.manual_seed(0)
                model = Line()
                trainer = fl.Trainer(model, fit_line, data=ds, rounds=2, min_domains=3, secure_aggregation=secure,
                                     strategy=fl.FedAdam(eta=0.05), progress=False)
                models[secure], history = trainer.fit()
            for a, b in zip(models[False].parameters(), models[True].parameters()):
                np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=1e-6)
            assert history[history.domain == "global"]["n"].tolist() == [3200, 3200]
    finally:
        fed.close()


def test_secure_training_rekeys_after_a_domain_restarts(trio, alice_token):
    """Rounds are keyed ahead; a domain killed (kill -9) after round 1 loses those keys: round 2 sums
    the other two, and round 3 keys again and has all three."""
    pytest.importorskip("torch")
    import fednb.learn as fl
    from tests.secure_models import Line

    fed = fednb.connect([d.url for d in trio], token=alice_token)
    ds = fed.dataset("patients")

    def kill_and_restart(record):
        if record["domain"] == "global" and record["round"] == 1:
            trio[2].server.kill()
        if record["domain"] == "global" and record["round"] == 2:
            trio[2].server.restart()

    try:
        with owners_approving(trio):
            trainer = fl.Trainer(Line(), fit_line, data=ds, rounds=4, min_domains=2, secure_aggregation=True,
                                 progress=False, on_round=kill_and_restart, round_timeout=30)
            _, history = trainer.fit()
        hosp3 = history[history.domain == "hosp-3"].set_index("round")["status"]
        assert hosp3[1] == "ok" and hosp3[2] in ("dropped", "failed") and hosp3[3] == hosp3[4] == "ok", history
        n = history[history.domain == "global"].set_index("round")["n"]
        assert n[1] == n[3] == n[4] == 3200 and n[2] == 3200 - len(trio[2].frame), n
    finally:
        if not trio[2].server.alive():
            trio[2].server.restart()
        fed.close()


def fit_line(model, df, **config):
    import torch

    x = torch.tensor(((df[["age", "bmi"]] - [55.0, 27.0]) / [15.0, 5.0]).to_numpy(), dtype=torch.float32)
    y = torch.tensor(df["systolic_bp"].to_numpy() / 100.0, dtype=torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x).squeeze(-1), y)
        loss.backward()
        opt.step()
    return {"loss": float(loss)}
