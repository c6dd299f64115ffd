"""Secrets of the domain process: not in the job's environment, nor anywhere in its memory image."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .support import SECRET

pytestmark = pytest.mark.usefixtures("unharmed")

# Reads this process's initial stack (argv and environment strings live there, above
# program_invocation_name) page by page through write(2): unmapped pages give EFAULT, not a crash.
SCAN = '''
import ctypes, os

def scan(df, secret):
    libc = ctypes.CDLL(None, use_errno=True)
    found = {"environ": any(secret in k or secret in v for k, v in os.environ.items())}
    start = ctypes.c_void_p.in_dll(libc, "program_invocation_name").value
    start -= start % 4096
    r, w = os.pipe()
    mem = bytearray()
    for i in range(-16, 64):
        n = libc.write(w, ctypes.c_void_p(start + i * 4096), 4096)
        if n == 4096:
            mem += os.read(r, 4096)
    found["stack"] = secret.encode() in mem
    found["scanned_kib"] = len(mem) // 1024
    for path in ("/proc/self/environ", "/proc/self/mem", "/proc/1/environ"):
        try:
            found[path] = secret.encode() in open(path, "rb").read(1 << 16)
        except OSError as e:
            found[path] = type(e).__name__
    return found
'''


def test_the_scanner_finds_the_secret_outside_the_sandbox():
    # Guard: the same code, run in an ordinary child of this process, does find the secret.
    code = SCAN + f"\nprint(scan(None, {SECRET!r}))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    found = eval(out.stdout)  # our own printout of a dict of bools/ints/strings
    assert found["environ"] and found["stack"] and found["/proc/self/environ"] is True


def test_no_secret_in_the_jobs_environment_or_memory(run):
    assert os.environ["FEDNB_TEST_SECRET"] == SECRET
    out = run(SCAN, entry="scan", args={"secret": SECRET})
    assert out.status == "ok", out.message
    found = out.value
    assert found["environ"] is False and found["stack"] is False and found["scanned_kib"] > 0
    for path in ("/proc/self/environ", "/proc/self/mem", "/proc/1/environ"):
        assert found[path] == "PermissionError", (path, found[path])


def zygote_memory_contains(pid: int, needle: bytes) -> bool:
    """Search every private writable mapping of ``pid`` (this test runs as root)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in addr.split("-"))
            if not perms.startswith("rw") or hi - lo > 256 * 2**20:
                continue
            try:
                mem.seek(lo)
                if needle in mem.read(hi - lo):
                    return True
            except OSError:
                continue
    return False


def test_job_code_never_passes_through_the_zygote(run, sandbox):
    # Specs travel in a memfd straight to the child: a later job, which inherits the zygote's
    # memory, must not find an earlier analyst's code there.
    marker = "analyst-code-marker-" + os.urandom(8).hex()
    out = run(f"def f(df):\n    return len({marker!r})\n")
    assert out.status == "ok"
    assert not zygote_memory_contains(sandbox.zygote_pid, marker.encode())
    # Guard: the scan does see what the zygote holds, e.g. the datasets path from its config.
    assert zygote_memory_contains(sandbox.zygote_pid, str(run.domain.datasets).encode())


def test_the_job_holds_none_of_the_domain_code(run):
    # The zygote imports only what jobs need: whatever else it imports, every job inherits (the store,
    # the audit log, policy and HTTP code, and whatever their imports hold in memory).
    code = "import sys\ndef f(df):\n    return sorted(sys.modules)\n"
    out = run(code)
    assert out.status == "ok", out.message
    ours = {m for m in out.value if m == "fednb" or m.startswith("fednb.")}
    sandbox = "fednb.domain.run.sandbox"
    domain_side = {f"{sandbox}.{m}" for m in ("client", "link", "jobs", "session", "selftest", "outcome")}
    allowed = {"fednb", "fednb._version", "fednb.errors", "fednb.codec", "fednb.domain", "fednb.domain.run"}
    assert ours - allowed == {m for m in ours if m.startswith(sandbox)} - domain_side, sorted(ours)
    assert not ours & domain_side
    for heavy in ("sqlite3", "httpx", "starlette", "uvicorn", "fastapi", "pydantic", "cryptography", "fednb.client"):
        assert heavy not in out.value, heavy
