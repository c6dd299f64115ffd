"""Processes and signals: no new processes, no signals out, nothing survives the job."""

from __future__ import annotations

import os
import signal
import time

import pytest

from .support import descendants, process_table

pytestmark = pytest.mark.usefixtures("unharmed")


def assert_blocked(out) -> None:
    assert out.status == "error", (out.status, out.value)
    assert out.message.startswith(("PermissionError", "BlockingIOError", "OSError")), out.message


def test_os_fork_and_fork_bomb(run, sandbox):
    before = descendants(sandbox.zygote_pid)
    assert_blocked(run("import os\ndef f(df):\n    return os.fork()\n"))
    assert_blocked(run("import os\ndef f(df):\n    while True:\n        os.fork()\n"))
    assert descendants(sandbox.zygote_pid) == before == set()


def test_subprocess_posix_spawn_and_exec(run):
    assert_blocked(run("import subprocess\ndef f(df):\n    return subprocess.run(['/bin/echo', 'hi']).returncode\n"))
    assert_blocked(run("import os\ndef f(df):\n    return os.posix_spawn('/bin/echo', ['echo'], {})\n"))
    assert_blocked(run("import os\ndef f(df):\n    os.execv('/bin/echo', ['echo', 'hi'])\n"))
    assert_blocked(run("import multiprocessing as mp\ndef f(df):\n    p = mp.Process(target=print)\n    p.start()\n"))


def test_os_system_runs_nothing(run):
    out = run("import os\ndef f(df):\n    rc = os.system('echo hi > marker')\n    return [rc, os.path.exists('marker')]\n")
    assert out.status == "ok", out.message
    rc, made = out.value
    assert rc != 0 and made is False


def test_thread_bomb(run):
    code = ("import threading, time\ndef f(df):\n    ts = []\n    for i in range(100000):\n"
            "        t = threading.Thread(target=time.sleep, args=(30,), daemon=True)\n        t.start()\n"
            "        ts.append(t)\n")
    out = run(code, wall_seconds=10)
    assert out.status in ("error", "memory"), out.status
    assert "can't start new thread" in out.message or "memory" in out.message, out.message


def test_daemon_thread_does_not_outlive_the_job(run, sandbox, domain):
    code = ('import threading, time\ndef f(df):\n    def linger():\n        while True:\n'
            '            time.sleep(0.01)\n    threading.Thread(target=linger, daemon=True).start()\n    return "done"\n')
    out = run(code)
    assert (out.status, out.value) == ("ok", "done")
    assert descendants(sandbox.zygote_pid) == set()
    # No process of a per-job uid anywhere on the host, except the live jobs of other sandboxes
    # (other domains on this machine): a job of ours that escaped our zygote would be under init.
    for pid in process_table():
        try:
            uid = int(open(f"/proc/{pid}/status").read().split("\nUid:")[1].split()[0])
        except (OSError, IndexError):
            continue
        if uid >= 1_900_000_000 and not _under_another_zygote(pid, sandbox.zygote_pid):
            raise AssertionError(f"process {pid} of a job uid survived")


def _under_another_zygote(pid: int, ours: int) -> bool:
    """True when ``pid`` descends from a sandbox zygote that is not ``ours``."""
    while pid > 1:
        try:
            status = open(f"/proc/{pid}/status").read()
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            return False
        if b"fednb.domain.run.sandbox.zygote" in cmdline:
            return pid != ours
        pid = int(status.split("\nPPid:")[1].split()[0])
    return False


KILL_CODE = '''
import ctypes, os
def f(df, domain_pid):
    libc = ctypes.CDLL(None, use_errno=True)
    out = {}
    for name, pid, sig in (("parent", os.getppid(), 9), ("all", -1, 9), ("group0", 0, 9), ("init", 1, 9),
                           ("domain", domain_pid, 10), ("domain_group", -domain_pid, 10)):
        r = libc.kill(pid, sig)
        out[name] = [r, ctypes.get_errno()]
    out["pidfd"] = libc.syscall(434, os.getppid(), 0)  # pidfd_open
    out["tgkill"] = libc.syscall(234, os.getppid(), os.getppid(), 9)
    return out
'''


@pytest.fixture
def usr1_guard():
    received = []
    old = signal.signal(signal.SIGUSR1, lambda *a: received.append(a))
    yield received
    time.sleep(0.2)
    signal.signal(signal.SIGUSR1, old)
    assert received == [], "a job signalled the domain"


def test_ctypes_kill_parent_all_and_domain(run, sandbox, usr1_guard):
    zygote = sandbox.zygote_pid
    out = run(KILL_CODE, args={"domain_pid": os.getpid()})
    assert out.status == "ok", out.message
    for name, value in out.value.items():
        r = value[0] if isinstance(value, list) else value
        assert r == -1, (name, value)
    assert sandbox.zygote_pid == zygote and os.path.exists(f"/proc/{zygote}")


def test_os_kill_init_and_domain(run, usr1_guard):
    assert_blocked(run("import os\ndef f(df):\n    os.kill(1, 9)\n"))
    assert_blocked(run("import os, signal\ndef f(df, p):\n    os.kill(p, signal.SIGUSR1)\n", args={"p": os.getpid()}))
    assert_blocked(run("import os\ndef f(df):\n    os.killpg(os.getpgid(0), 9)\n"))


def test_job_can_signal_itself(run):
    # Signals stay usable inside the job (raise/alarm-based timeouts in analyst code).
    code = ("import os, signal\ndef f(df):\n    got = []\n    signal.signal(signal.SIGUSR1, lambda *a: got.append(1))\n"
            "    os.kill(os.getpid(), signal.SIGUSR1)\n    return got\n")
    assert run(code).value == [1]


def test_no_privilege_or_namespace_games(run):
    code = '''
import ctypes, os, resource
def f(df):
    libc = ctypes.CDLL(None, use_errno=True)
    def sys(r):
        if r < 0:
            raise OSError(ctypes.get_errno(), "denied")
    out = {"uid": os.getuid()}
    calls = {"setuid0": lambda: os.setuid(0),
             "unshare_user": lambda: sys(libc.unshare(0x10000000)),
             "unshare_net": lambda: sys(libc.unshare(0x40000000)),
             "setsid": os.setsid,
             # CPython reports the kernel's EPERM as ValueError here
             "lower_rlimit": lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (10, 10)),
             "raise_rlimit": lambda: resource.setrlimit(resource.RLIMIT_AS, (-1, -1)),
             "chroot": lambda: os.chroot("."),
             "ptrace_traceme": lambda: sys(libc.ptrace(0, 0, 0, 0)),
             "io_uring_setup": lambda: sys(libc.syscall(425, 8, 0)),
             "bpf": lambda: sys(libc.syscall(321, 0, 0, 0)),
             "mount": lambda: sys(libc.mount(b"none", b".", b"tmpfs", 0, None)),
             "keyctl": lambda: sys(libc.syscall(250, 0, 0, 0, 0, 0)),
             "shmget": lambda: sys(libc.syscall(29, 0, 4096, 0o1666))}
    for name, call in calls.items():
        try:
            call()
            out[name] = "ALLOWED"
        except (OSError, ValueError) as e:
            out[name] = type(e).__name__
    return out
'''
    out = run(code)
    assert out.status == "ok", out.message
    assert out.value.pop("uid") != 0
    assert "ALLOWED" not in out.value.values(), out.value


def test_mount_listing_is_denied_and_unreviewed_syscalls_are_absent(run):
    # statmount/listmount would list the host's mounts (names of folders, devices); a syscall newer than
    # the filter's review must look absent (ENOSYS), not allowed by default.
    code = '''
import ctypes, errno
def f(df):
    libc = ctypes.CDLL(None, use_errno=True)
    out = {}
    for name, nr in {"statmount": 457, "listmount": 458, "open_tree_attr": 467, "unreviewed": 470,
                     "far_future": 1000}.items():
        ctypes.set_errno(0)
        r = libc.syscall(nr, 0, 0, 0, 0, 0)
        out[name] = errno.errorcode.get(ctypes.get_errno(), "ALLOWED") if r < 0 else "ALLOWED"
    return out
'''
    out = run(code)
    assert out.status == "ok", out.message
    assert out.value == {"statmount": "EPERM", "listmount": "EPERM", "open_tree_attr": "EPERM",
                         "unreviewed": "ENOSYS", "far_future": "ENOSYS"}
