"""The start-up probe: a job that tries to escape, and the isolation level that actually held.

Levels (SANDBOX_RECIPE.md): "strong" = namespaces + landlock >= 4 + seccomp + rlimits;
"standard" = landlock >= 6 + seccomp + rlimits without namespaces; "minimal" = seccomp +
rlimits; "none" = no seccomp, or any probe got through: jobs are refused.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from fednb.domain.run.sandbox.spec import JobOutcome, JobSpec, Limits

EXTERNAL_IP = "8.8.8.8"

PROBE_CODE = '''
def probe(df, port, canary, external):
    import ctypes, os, socket
    found = {}
    def attempt(name, fn):
        try:
            fn()
            found[name] = "ALLOWED"
        except BaseException as e:
            found[name] = type(e).__name__
    def connect(host, p):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect((host, p))
        finally:
            s.close()
    def fork():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    attempt("tcp_local", lambda: connect("127.0.0.1", port))
    attempt("tcp_external", lambda: connect(external, 53))
    attempt("read_etc_passwd", lambda: open("/etc/passwd").read())
    attempt("read_domain_file", lambda: open(canary).read())
    attempt("fork", fork)
    attempt("exec", lambda: os.execv("/bin/true", ["true"]))
    libc = ctypes.CDLL(None)
    found["seccomp_mode"] = libc.prctl(21, 0, 0, 0, 0)
    found["uid"] = os.getuid()
    return found
'''
CHECKS = ("tcp_local", "tcp_external", "read_etc_passwd", "read_domain_file", "fork", "exec")


def run_probe(run, domain_dir: Path) -> tuple[JobOutcome, bool]:
    """Run the probe job with ``run(spec)``; returns its outcome and whether a TCP connection
    reached the real listener the domain opened for it."""
    canary = domain_dir / f".sandbox-selftest-{secrets.token_hex(8)}"
    canary.write_text("if a job can read this, the sandbox leaks the domain folder\n")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        spec = JobSpec(job_id="selftest", code=PROBE_CODE, entry="probe", data_path="", data_format="none",
                       args={"port": listener.getsockname()[1], "canary": str(canary), "external": EXTERNAL_IP},
                       probe_fraction=None, limits=Limits(cpu_seconds=10, wall_seconds=20, memory_mb=256))
        out = run(spec)
        try:
            listener.accept()[0].close()
            connected = True
        except BlockingIOError:
            connected = False
    finally:
        listener.close()
        canary.unlink(missing_ok=True)
    return out, connected


def report(ready: dict, out: JobOutcome, connected: bool, domain_owner_uid: int | None = None) -> dict:
    """The isolation report: what the zygote set up, checked against what the probe could do."""
    found = out.value if out.status == "ok" and isinstance(out.value, dict) else {}
    escapes = [k for k in CHECKS if found.get(k) == "ALLOWED"]
    if connected and "tcp_local" not in escapes:
        escapes.append("tcp_local")
    missing = [k for k in CHECKS if k not in found]
    seccomp_held = bool(ready.get("seccomp")) and found.get("seccomp_mode") == 2
    uid = found.get("uid")
    uid_drop = bool(ready.get("uid_drop")) and isinstance(uid, int) and uid != os.geteuid()
    namespaces = bool(ready.get("netns") and ready.get("mountns") and ready.get("pidns"))
    abi = int(ready.get("landlock_abi") or 0)
    if out.status != "ok" or escapes or missing or not seccomp_held:
        level = "none"
    elif namespaces and abi >= 4:
        level = "strong"
    elif abi >= 6:
        level = "standard"
    else:
        level = "minimal"
    details = _details(ready, level, escapes, out, seccomp_held, uid_drop, abi)
    return {"level": level, "netns": bool(ready.get("netns")), "mountns": bool(ready.get("mountns")),
            "pidns": bool(ready.get("pidns")), "userns": bool(ready.get("userns")), "landlock_abi": abi,
            "seccomp": seccomp_held, "uid_drop": uid_drop, "tmpfs": bool(ready.get("tmpfs")),
            "probe": {k: found.get(k) for k in CHECKS}, "details": details}


def _details(ready: dict, level: str, escapes: list, out: JobOutcome, seccomp: bool, uid_drop: bool,
             abi: int) -> str:
    parts = []
    if out.status != "ok":
        parts.append(f"self-test job did not complete ({out.status}: {out.message})")
    if escapes:
        parts.append(f"self-test escaped the sandbox: {', '.join(escapes)}")
    if ready.get("netns"):
        parts.append("zygote in its own " + ("user+" if ready.get("userns") else "") + "net+mount+pid+ipc+uts namespaces")
    else:
        parts.append(f"no namespaces ({ready.get('ns_error') or 'unavailable'})")
    parts.append(f"landlock ABI {abi}" + (" (files, TCP, signal and abstract-socket scoping)" if abi >= 6
                                           else " (files, TCP)" if abi >= 4 else " (files)" if abi else " absent"))
    parts.append("seccomp deny-list" if seccomp else "no seccomp")
    parts.append("per-job uid" if uid_drop else "jobs keep the zygote's uid")
    parts.append("rlimits CPU/AS/NPROC/FSIZE/NOFILE/CORE")
    parts += list(ready.get("notes") or [])
    if level == "none":
        parts.append("jobs are refused at this level")
    return "; ".join(parts)
