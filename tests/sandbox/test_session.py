"""A kept-alive worker across rounds: same lockdown, state kept, per-round deadline, killed on abuse."""

from __future__ import annotations

import pytest

from fednb.errors import SandboxError

from .support import descendants

ROUNDS = '''
state = {"rounds": 0}

def step(df, weight, scale=1):
    state["rounds"] += 1
    return {"round": state["rounds"], "value": float((df["x"] * weight).mean()) * scale}
'''


def test_rounds_keep_state_and_take_inputs(sandbox, run, domain):
    spec = run.spec(ROUNDS, entry="step", args={"scale": 2}, probe=0.5)
    with sandbox.session(spec) as session:
        for i, weight in enumerate([0.5, 1.0, 2.0], start=1):
            out = session.call({"weight": weight})
            assert out.status == "ok", out.message
            assert out.value["round"] == 2 * i - 1  # the probe call on half the rows runs too
            assert out.value["value"] == pytest.approx(float((domain.frame["x"] * weight).mean()) * 2)
            assert out.probe["rows"] == 5000 and out.probe["probe_rows"] == 2500
        worker = descendants(sandbox.zygote_pid)
        assert len(worker) == 1
    assert descendants(sandbox.zygote_pid) == set()


def test_same_lockdown_in_a_session(sandbox, run, domain):
    code = "def f(df, path):\n    return open(path).read()\n"
    with sandbox.session(run.spec(code)) as session:
        for path in (str(domain.tokens), "/etc/passwd"):
            out = session.call({"path": path})
            assert out.status == "error" and out.message.startswith(("PermissionError", "FileNotFoundError"))
        assert session.alive  # an analyst error is a round result, not the end of the worker


def test_round_timeout_kills_the_worker(sandbox, run):
    code = "import time\ndef f(df, t):\n    time.sleep(t)\n    return t\n"
    session = sandbox.session(run.spec(code, wall_seconds=1))
    assert session.call({"t": 0}).value == 0
    out = session.call({"t": 30})
    assert out.status == "timeout" and not session.alive
    assert descendants(sandbox.zygote_pid) == set()
    with pytest.raises(SandboxError):
        session.call({"t": 0})


def test_bad_frame_kills_the_worker(sandbox, run):
    code = "import os\ndef f(df, forge):\n    if forge:\n        os.write(3, b'\\x00\\x00\\x00\\x05\\x00\\x00\\x00\\x00nope!')\n    return 1\n"
    session = sandbox.session(run.spec(code))
    assert session.call({"forge": False}).value == 1
    out = session.call({"forge": True})
    assert out.status == "bad_output" and not session.alive
    assert descendants(sandbox.zygote_pid) == set()


def test_worker_dying_mid_round(sandbox, run):
    code = "def f(df, spin):\n    while spin:\n        pass\n    return 0\n"
    session = sandbox.session(run.spec(code, cpu_seconds=1, wall_seconds=10))
    assert session.call({"spin": False}).value == 0
    out = session.call({"spin": True})
    assert out.status == "cpu_limit" and not session.alive


def test_blob_round_trip(sandbox, run):
    code = "def f(df):\n    return len(df)\n"
    with sandbox.session(run.spec(code)) as session:
        out = session.call({}, blob=b"\x00" * 1000)
        assert (out.status, out.value, out.blob) == ("ok", 5000, None)
