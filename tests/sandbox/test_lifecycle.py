"""The zygote's life: restarts after it dies, leaves nothing behind, refuses to run unsandboxed."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from fednb.domain.run.sandbox import Sandbox, selftest
from fednb.errors import SandboxError

from .support import Runner, descendants, process_table

SUM = "def f(df):\n    return int(df['y'].sum())\n"


def wait_gone(pid: int, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = process_table().get(pid)
        if state is None or state[2] in ("Z", "X"):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} is still running")


def test_zygote_killed_externally_next_job_recovers(sandbox, run, domain):
    first = sandbox.zygote_pid
    os.kill(first, signal.SIGKILL)
    wait_gone(first)
    out = run(SUM)
    assert (out.status, out.value) == ("ok", int(domain.frame["y"].sum())), out.message
    assert sandbox.zygote_pid not in (None, first)
    assert sandbox.isolation["level"] == "strong"


def test_zygote_killed_during_a_job(sandbox, run, domain):
    results = {}
    t = threading.Thread(target=lambda: results.setdefault("out", run("import time\ndef f(df):\n    time.sleep(30)\n")))
    t.start()
    deadline = time.monotonic() + 5
    while not descendants(sandbox.zygote_pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    job_pids = descendants(sandbox.zygote_pid)
    assert job_pids, "the job never started"
    os.kill(sandbox.zygote_pid, signal.SIGKILL)
    t.join(10)
    assert results["out"].status == "killed" and "restarts" in results["out"].message
    for pid in job_pids:
        wait_gone(pid)
    out = run(SUM)
    assert (out.status, out.value) == ("ok", int(domain.frame["y"].sum()))


def test_close_leaves_no_process(domain):
    me = os.getpid()
    before = descendants(me)  # another module's sandbox may be running
    sb = Sandbox(domain.datasets)
    sb.start()
    runner = Runner(sb, domain)
    threading.Thread(target=lambda: runner("import time\ndef f(df):\n    time.sleep(30)\n"), daemon=True).start()
    session = sb.session(runner.spec("def f(df, k=0):\n    return k\n"))
    assert session.call({"k": 3}).value == 3
    deadline = time.monotonic() + 5
    while len(descendants(sb.zygote_pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    ours = descendants(me) - before
    assert len(ours) >= 4, ours  # exec'd shim, zygote, a job, the session's worker
    sessions = {process_table()[p][1] for p in ours}
    sb.close()
    sb.close()  # idempotent
    table = process_table()
    left = {p: table[p] for p in ours if p in table}
    assert left == {}, f"processes left behind: {left}"
    assert not [p for p, (_, sid, _) in table.items() if sid in sessions], "a process of a sandbox session survived"
    with pytest.raises(SandboxError):
        runner(SUM)
    with pytest.raises(SandboxError):
        session.call({"k": 1})


def test_context_manager_and_restart_on_start(domain):
    with Sandbox(domain.datasets) as sb:
        assert sb.isolation["level"] == "strong"
        zygote = sb.zygote_pid
        assert sb.start()["level"] == "strong" and sb.zygote_pid == zygote  # start() on a running one: no-op
    assert sb.zygote_pid is None


def test_refuses_to_run_when_the_self_test_fails(domain, monkeypatch):
    # A probe that "escapes" (reads a file it may read) makes the level "none": no job may run.
    leaky = selftest.PROBE_CODE.replace('attempt("exec"', 'found["exec"] = "ALLOWED"\n    (lambda *a: None)("exec"')
    assert leaky != selftest.PROBE_CODE
    monkeypatch.setattr(selftest, "PROBE_CODE", leaky)
    sb = Sandbox(domain.datasets)
    try:
        iso = sb.start()
        assert iso["level"] == "none" and "exec" in iso["details"]
        with pytest.raises(SandboxError, match="refused"):
            Runner(sb, domain)(SUM)
    finally:
        sb.close()


def test_refuses_to_run_when_the_ipc_wall_is_missing(domain, monkeypatch):
    # A job that reaches a UNIX socket outside the sandbox (here: a probe that says so) makes the level "none".
    leaky = selftest.PROBE_CODE.replace('attempt("unix_pathname"', 'found["unix_pathname"] = "ALLOWED"\n'
                                        '    (lambda *a: None)("unix_pathname"')
    assert leaky != selftest.PROBE_CODE
    monkeypatch.setattr(selftest, "PROBE_CODE", leaky)
    sb = Sandbox(domain.datasets)
    try:
        iso = sb.start()
        assert iso["level"] == "none" and "unix_pathname" in iso["details"]
        with pytest.raises(SandboxError, match="refused"):
            Runner(sb, domain)(SUM)
    finally:
        sb.close()


def test_a_listener_reached_drops_the_level_whatever_the_probe_says():
    # The domain's own listeners are the judge: a probe that denies everything but got through is caught.
    from fednb.domain.run.sandbox.spec import JobOutcome

    ready = {"netns": True, "mountns": True, "pidns": True, "landlock_abi": 7, "seccomp": True}
    honest = {k: "PermissionError" for k in selftest.CHECKS} | {"socketpair": "ALLOWED", "seccomp_mode": 2,
                                                                  "uid": 12345}
    assert selftest.report(ready, JobOutcome("ok", value=honest), [])["level"] == "strong"
    for reached in ("unix_pathname", "unix_abstract", "unix_dgram_pair", "tcp_local"):
        iso = selftest.report(ready, JobOutcome("ok", value=honest), [reached])
        assert iso["level"] == "none" and reached in iso["details"], iso
    no_pair = selftest.report(ready, JobOutcome("ok", value={**honest, "socketpair": "PermissionError"}), [])
    assert no_pair["level"] == "strong" and "honest use blocked: socketpair" in no_pair["details"]


def test_hung_zygote_is_replaced_by_the_domain_backstop(sandbox, run, domain):
    # A stopped zygote cannot enforce the wall limit: the domain's own deadline (wall + 5 s) must.
    stuck = sandbox.zygote_pid
    os.kill(stuck, signal.SIGSTOP)
    try:
        out = run("def f(df):\n    return 1\n", wall_seconds=1)
    finally:
        try:
            os.kill(stuck, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert out.status == "timeout" and 5000 <= out.wall_ms < 30_000  # the backstop: wall + 5 s, never earlier
    wait_gone(stuck)
    out = run(SUM)
    assert (out.status, out.value) == ("ok", int(domain.frame["y"].sum()))
    assert sandbox.zygote_pid != stuck


def test_dropped_session_lets_its_worker_exit(sandbox, run):
    import gc

    session = sandbox.session(run.spec("def f(df):\n    return 1\n"))
    assert session.call({}).value == 1
    worker = descendants(sandbox.zygote_pid)
    assert len(worker) == 1
    del session
    gc.collect()
    for pid in worker:
        wait_gone(pid)
