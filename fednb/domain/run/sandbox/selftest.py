"""The start-up probe: a job that tries to escape, and the isolation level that actually held.

Levels (SANDBOX_RECIPE.md): "strong" = namespaces + landlock >= 4 + seccomp + rlimits;
"standard" = landlock >= 6 + seccomp + rlimits without namespaces; "minimal" = seccomp +
rlimits; "none" = no seccomp, or any probe got through: jobs are refused.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
from pathlib import Path

from fednb.domain.run.sandbox.spec import JobOutcome, JobSpec, Limits

EXTERNAL_IP = "8.8.8.8"

PROBE_CODE = '''
def probe(df, port, canary, external, unix_path, dgram_path, abstract):
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
    def unix_connect(address):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(2)
            s.connect(address)
            s.sendall(b"rows")
        finally:
            s.close()
    def dgram_pair_sendto():
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            a.sendto(b"rows", dgram_path)
        finally:
            a.close(); b.close()
    def stream_pair_sendto():
        a, b = socket.socketpair()
        try:
            a.sendto(b"rows", dgram_path)
        finally:
            a.close(); b.close()
    attempt("unix_socket", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())
    attempt("unix_pathname", lambda: unix_connect(unix_path))
    attempt("unix_abstract", lambda: unix_connect("\\0" + abstract))
    attempt("unix_dgram_pair", dgram_pair_sendto)
    attempt("unix_pair_sendto", stream_pair_sendto)
    attempt("socketpair", lambda: [s.close() for s in socket.socketpair()])
    libc = ctypes.CDLL(None)
    found["seccomp_mode"] = libc.prctl(21, 0, 0, 0, 0)
    found["uid"] = os.getuid()
    return found
'''
CHECKS = ("tcp_local", "tcp_external", "read_etc_passwd", "read_domain_file", "fork", "exec",
          "unix_socket", "unix_pathname", "unix_abstract", "unix_dgram_pair", "unix_pair_sendto")
# Honest use that must keep working: asyncio, multiprocessing.Pipe and libraries use socketpair.
WORKS = ("socketpair",)


class _Listeners:
    """What the probe tries to reach: TCP on loopback, a pathname stream and datagram socket open to
    everyone (so only the sandbox, not file permissions, stands in the way) and an abstract socket."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="fednb-selftest-")
        os.chmod(self.dir, 0o755)
        self.socks: dict[str, socket.socket] = {}
        self.abstract = f"fednb-selftest-{secrets.token_hex(8)}"
        for name, family, kind, address in (
                ("tcp_local", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0)),
                ("unix_pathname", socket.AF_UNIX, socket.SOCK_STREAM, os.path.join(self.dir, "stream")),
                ("unix_dgram_pair", socket.AF_UNIX, socket.SOCK_DGRAM, os.path.join(self.dir, "dgram")),
                ("unix_abstract", socket.AF_UNIX, socket.SOCK_STREAM, "\0" + self.abstract)):
            sock = self.socks[name] = socket.socket(family, kind)
            sock.bind(address)
            if kind == socket.SOCK_STREAM:
                sock.listen(4)
            sock.setblocking(False)
            if isinstance(address, str) and not address.startswith("\0"):
                os.chmod(address, 0o777)

    def args(self) -> dict:
        return {"port": self.socks["tcp_local"].getsockname()[1], "unix_path": self.socks["unix_pathname"].getsockname(),
                "dgram_path": self.socks["unix_dgram_pair"].getsockname(), "abstract": self.abstract}

    def reached(self) -> list[str]:
        """The listeners something connected or sent to."""
        out = []
        for name, sock in self.socks.items():
            try:
                if sock.type == socket.SOCK_STREAM:
                    sock.accept()[0].close()
                else:
                    sock.recv(64)
                out.append(name)
            except BlockingIOError:
                pass
        return out

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_probe(run, domain_dir: Path) -> tuple[JobOutcome, list[str]]:
    """Run the probe job with ``run(spec)``; returns its outcome and the real listeners the domain
    opened for it that something reached (whatever the probe itself says)."""
    canary = domain_dir / f".sandbox-selftest-{secrets.token_hex(8)}"
    canary.write_text("if a job can read this, the sandbox leaks the domain folder\n")
    listeners = _Listeners()
    try:
        spec = JobSpec(job_id="selftest", code=PROBE_CODE, entry="probe", data_path="", data_format="none",
                       args={**listeners.args(), "canary": str(canary), "external": EXTERNAL_IP},
                       probe_fraction=None, limits=Limits(cpu_seconds=10, wall_seconds=20, memory_mb=256))
        out = run(spec)
        reached = listeners.reached()
    finally:
        listeners.close()
        canary.unlink(missing_ok=True)
    return out, reached


def report(ready: dict, out: JobOutcome, reached: list[str], domain_owner_uid: int | None = None) -> dict:
    """The isolation report: what the zygote set up, checked against what the probe could do and
    what reached the domain's listeners."""
    found = out.value if out.status == "ok" and isinstance(out.value, dict) else {}
    escapes = [k for k in CHECKS if found.get(k) == "ALLOWED"]
    escapes += [k for k in reached if k not in escapes]
    missing = [k for k in CHECKS + WORKS if k not in found]
    broken = [k for k in WORKS if k in found and found[k] != "ALLOWED"]
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
            "probe": {k: found.get(k) for k in CHECKS}, "works": {k: found.get(k) for k in WORKS}, "details": details
            + (f"; honest use blocked: {', '.join(broken)}" if broken else "")}


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
    parts.append("seccomp (sockets: socketpair only)" if seccomp else "no seccomp")
    parts.append("per-job uid" if uid_drop else "jobs keep the zygote's uid")
    parts.append("rlimits CPU/AS/NPROC/FSIZE/NOFILE/CORE")
    parts += list(ready.get("notes") or [])
    if level == "none":
        parts.append("jobs are refused at this level")
    return "; ".join(parts)
