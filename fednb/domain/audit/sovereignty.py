"""The sovereignty statement: what software a domain runs, under which policy and isolation, where
each part runs, and the outbound network connections its server attempted (measured, not promised).

Outbound attempts are recorded by a Python audit hook (PEP 578, ``sys.addaudithook``) installed in
the server process by ``fednb domain serve``: every ``socket.connect``, ``socket.sendto`` and
``socket.sendmsg`` to an address that is not loopback, and every name lookup
(``socket.getaddrinfo``, ``socket.gethostbyname``) of a host that is not local, is appended to
``DIR/outbound.jsonl``. It covers Python code in the server process (the HTTP API, the review, the
job runner, the built-ins and every library they call through Python's socket module). It does not
cover native code that makes system calls itself, the sandbox's child processes (their network is
cut by a network namespace when the isolation report lists ``netns``), or other processes on the
machine: a firewall log is the check for those.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import platform
import re
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fednb._version import __version__

if TYPE_CHECKING:
    from fednb.domain.domain import Domain

OUTBOUND_FILE = "outbound.jsonl"
SERVER_FILE = "server.json"
WATCHED = ("socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo", "socket.gethostbyname")
COVERS = ("Python code in the domain server process (HTTP API, review, job runner, built-ins, and the libraries "
          "they call through Python's socket module): connect, sendto and sendmsg to any non-loopback address, "
          "and name lookups of non-local hosts. Not covered: native code making system calls directly, the "
          "sandbox's child processes (cut off by a network namespace where the isolation lists netns), other "
          "processes on the machine.")

_target: Path | None = None
_busy = threading.local()


def _local_host(host: Any) -> bool:
    if host is None or host in ("", "localhost", b"localhost"):
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return str(host).endswith(".localhost")


def outbound(event: str, args: tuple) -> str | None:
    """The remote address an audited socket event reaches, or None when it stays on this machine."""
    if event in ("socket.getaddrinfo", "socket.gethostbyname"):
        host = args[0] if args else None
        return None if _local_host(host) else f"lookup {host}"
    address = args[1] if len(args) > 1 else None
    if not isinstance(address, tuple) or not address:  # AF_UNIX paths and other local families
        return None
    return None if _local_host(address[0]) else f"{address[0]}:{address[1] if len(address) > 1 else ''}"


def _hook(event: str, args: tuple) -> None:
    if _target is None or not event.startswith("socket.") or event not in WATCHED or getattr(_busy, "on", False):
        return
    _busy.on = True
    try:
        where = outbound(event, args)
        if where is not None:
            line = json.dumps({"time": time.time(), "event": event, "to": where})
            with open(_target / OUTBOUND_FILE, "a", encoding="utf-8") as f:
                f.write(line + "\n")
    except Exception:  # noqa: BLE001 - an audit hook must never break the call it watches
        pass
    finally:
        _busy.on = False


def watch(folder: str | Path, isolation: dict[str, Any] | None = None, fingerprint: str | None = None) -> None:
    """Record this process's outbound attempts into ``folder`` from now on; note the isolation level
    and the key the server signs with."""
    global _target
    folder = Path(folder)
    now = time.time()
    first = _read_json(folder / SERVER_FILE).get("first_started_at", now)
    state = {"first_started_at": first, "started_at": now, "pid": _pid(), "isolation": isolation or {},
             "fingerprint": fingerprint, "outbound_watch": list(WATCHED)}
    (folder / SERVER_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
    if _target is None:
        sys.addaudithook(_hook)  # hooks cannot be removed: one per process, re-pointed by later calls
    _target = folder


def unwatch() -> None:
    global _target
    _target = None


def _pid() -> int:
    import os

    return os.getpid()


def distributions(root: str = "fednb") -> list[dict[str, str]]:
    """``root`` and every distribution it requires (transitively, without extras), each with its
    version and the SHA-256 of its ``RECORD`` (the installer's list of every file and its hash, so
    this one hash pins the installed files)."""
    seen: dict[str, dict[str, str]] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        record = dist.read_text("RECORD") or ""
        seen[key] = {"name": dist.metadata["Name"], "version": dist.version,
                     "record_sha256": hashlib.sha256(record.encode()).hexdigest() if record else "no RECORD"}
        for req in dist.requires or []:
            if "extra ==" in req.replace("extra==", "extra =="):
                continue
            found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
            if found:
                todo.append(found.group(1))
    return sorted(seen.values(), key=lambda d: d["name"].lower())


def statement(domain: Domain, who=lambda name: name) -> dict[str, Any]:
    """The statement as plain data (published in the report's JSON and HTML). ``who`` maps the
    analysts named in per-analyst budgets to what may be published (their pseudonyms)."""
    server = server_state(domain.path)
    attempts = _attempts(domain.path / OUTBOUND_FILE)
    policy_text = (domain.path / "policy.toml").read_text(encoding="utf-8")
    isolation = server.get("isolation") or {}
    return {
        "software": {"fednb": __version__, "python": platform.python_version(),
                     "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
                     "distributions": distributions()},
        "isolation": isolation.get("level", "unknown (the server has not been started)"),
        "isolation_details": isolation,
        "policy": {"file_sha256": hashlib.sha256(policy_text.encode()).hexdigest(),
                   "settings": _settings(domain, who)},
        "network": {"outbound_attempts": len(attempts), "watching_since": server.get("first_started_at"),
                    "recent": attempts[-20:], "covers": COVERS if server else "not measured: the server has "
                    "not been started since this record began"},
        "where": [
            {"part": "HTTP API, review, job runner, built-in aggregates, audit log", "runs": "the domain server "
             "process on the owner's machine (binds 127.0.0.1 unless the owner chooses another address)"},
            {"part": "analysts' custom code and training", "runs": "sandboxed child processes of the server, "
             f"on the same machine (isolation: {isolation.get('level', 'unknown')})"},
            {"part": "datasets, audit log, receipts, the domain's private key",
             "runs": "files in the domain folder on the owner's machine; never sent anywhere"},
            {"part": "analysts' notebooks", "runs": "the analysts' own machines; they receive metadata, mocks and "
             "released aggregates only"},
        ],
    }


def server_state(folder: str | Path) -> dict[str, Any]:
    """What the last ``fednb domain serve`` recorded: start times and isolation ({} if never served)."""
    return _read_json(Path(folder) / SERVER_FILE)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _attempts(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"event": "unreadable line", "to": line[:100]})
    return out


def _settings(domain: Domain, who) -> dict[str, Any]:
    """The policy as validated (every default filled in), analysts in budget keys made pseudonymous."""
    settings = domain.policy.model_dump(mode="json")
    budgets = settings.get("privacy", {}).get("budgets", {})
    renamed = {}
    for key, allowance in budgets.items():
        analyst, _, dataset = key.partition("/")
        renamed[f"{analyst if analyst == '*' else who(analyst)}/{dataset}"] = allowance
    if budgets:
        settings["privacy"]["budgets"] = renamed
    return settings
