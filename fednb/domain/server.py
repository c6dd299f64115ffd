"""``fednb domain serve``: the domain's HTTP server, its sandbox and its job runner in one process.

An idle domain uses no CPU: the HTTP server has no tick (:mod:`.api.idle_server`), the runner and the
long-polls sleep until a change (this process's own, or another process's commit seen by
:mod:`.store.outside_writes` on SQLite, :mod:`.store.commit_notices` on PostgreSQL), and the sandbox's
fork server and built-in workers are stopped when unused, so many domains fit on one laptop.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from fednb.domain.api.idle_server import DateHeader, IdleServer
from fednb.domain.audit import sovereignty
from fednb.domain.domain import Domain
from fednb.domain.run import worker_template
from fednb.domain.run.runner import POLL_SECONDS, Runner
from fednb.domain.store import outside_writes, serving
from fednb.errors import FednbError, InvalidInput, SandboxError

# uvicorn's own limits: connections served at once (more get 503), an idle kept-alive connection's
# life, and the largest request head (headers); bodies are limited by the app (MAX_BODY_BYTES).
LIMITS = {"limit_concurrency": 512, "timeout_keep_alive": 15, "h11_max_incomplete_event_size": 64 * 1024,
          "backlog": 1024}


def describe_isolation(iso: dict[str, Any]) -> str:
    parts = [name for name, key in (("network namespace", "netns"), ("mount namespace", "mountns"),
                                    ("pid namespace", "pidns"), ("seccomp", "seccomp"),
                                    ("per-job uid", "uid_drop"), ("shared job cgroup", "cgroup")) if iso.get(key)]
    if iso.get("landlock_abi"):
        parts.append(f"landlock ABI {iso['landlock_abi']}")
    return f"{iso.get('level', 'none')}" + (f" ({', '.join(parts)})" if parts else "")


def start_sandbox(domain: Domain, attempts: int = 2):
    """The sandbox for custom code; ``(None, report)`` where none can run (built-ins still work).

    A start that fails is tried once more (a machine under heavy load can miss a start-up deadline);
    the reason is logged for the owner and shown in the isolation report.
    """
    import importlib.util

    learning = domain.policy.learning
    torch = learning.enabled and learning.warm_torch and importlib.util.find_spec("torch") is not None
    warm = ("numpy", "pandas", "torch") if torch else ("numpy", "pandas")
    problem: Exception | None = None
    for _ in range(attempts):
        sandbox = None
        try:
            from fednb.domain.run.sandbox import Sandbox, cgroup

            limits = domain.policy.sandbox
            lazy = bool(limits.idle_seconds)  # the probe reads no data: no need to warm pandas for it
            sandbox = Sandbox(domain.path / "datasets", warm=() if lazy else warm, namespaces=limits.namespaces,
                              cgroup=cgroup.create(*limits.shared_cap()), idle_seconds=limits.idle_seconds or None)
            isolation = sandbox.start()
            if lazy:  # probed; asleep until the first custom job, which starts it warm
                sandbox.sleep()
                sandbox.warm = warm
            return sandbox, isolation
        except (ImportError, OSError, SandboxError) as exc:
            problem = exc
            logging.getLogger("fednb.domain.server").warning("the sandbox did not start: %s", exc)
            if sandbox is not None:
                sandbox.close()
    return None, {"level": "none", "details": f"custom code disabled: {problem}"}


def check_tls(certfile: str, keyfile: str) -> None:
    """Load the pair once before anything starts: a wrong file is one clear line, not a traceback."""
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise FednbError(f"cannot serve TLS with {certfile} and {keyfile} ({exc}); give a PEM certificate "
                         "and the private key that belongs to it") from None


def plain_http_warning(host: str, certfile: str | None) -> str | None:
    """A line for the owner when tokens and results would cross a network unencrypted."""
    import ipaddress

    if certfile:
        return None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (f"warning: serving plain http on {host}: tokens and results cross the network unencrypted; "
            "serve with --certfile and --keyfile (SECURITY.md, TLS)")


def bind_problem(host: str, port: int, exc: OSError) -> str:
    """One line saying why the domain cannot listen there and what to type instead."""
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use (another domain or program listens there); "
                "pick another with --port N, or --port 0 for any free port")
    if exc.errno == errno.EACCES:
        return f"port {port} needs administrator rights; use a port above 1023, e.g. --port 8701"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; use --host 127.0.0.1 or one of its own addresses"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio only turns Nagle off (TCP_NODELAY) for such sockets, and with Nagle
    # on, every kept-alive response waits ~40 ms for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(bind_problem(host, port, exc)) from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def quiet(app: Any, server: IdleServer, runner: Runner, sandbox: Any, outside: Any, watched: bool) -> None:
    """An idle domain sleeps: long-polls wait for changes (no re-reads where the store is watched),
    and ``GET /v1/wakeups`` shows the owner that nothing wakes while nothing happens."""
    from fednb.domain.api import wakeups

    notifier = app.state.notifier
    if watched:
        notifier.recheck_seconds = None

    def counters() -> dict[str, Any]:
        return {"process": os.getpid(),  # which of the domain's server processes (--workers N) answers
                "runner": runner.wakeups, "long_polls": notifier.wakeups, "outside_writes": outside.wakeups,
                "store_watched": watched, "server": server.wakeups,
                "sandbox_starts": getattr(sandbox, "starts", 0),
                "sandbox_running": bool(sandbox is not None and sandbox.zygote_pid),
                "builtin_workers_running": runner.workers_running()}

    app.state.wakeups = counters
    app.include_router(wakeups.router)


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8701, *,
          certfile: str | None = None, keyfile: str | None = None, log_level: str = "warning") -> None:
    import uvicorn

    from fednb.domain.api.app import create_app
    from fednb.domain.api.eager_routes import build_routes

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if certfile:
        check_tls(certfile, keyfile or certfile)
    # listen first: while the rest starts (a warm sandbox takes seconds on a loaded machine), clients'
    # connections wait in the backlog instead of being refused, so a restart costs them no retries
    sock = bind(host, port)
    template = worker_template.fork_template(close=(sock.fileno(),))  # while this process has one thread
    domain = Domain(path)
    alone = serving.sole(domain.store)  # PostgreSQL: no other server process recovers or runs this store's jobs
    sandbox, isolation = start_sandbox(domain)
    # from here on, outbound connection attempts are recorded; the signing key is loaded now, not at the first release
    sovereignty.watch(domain.path, isolation, domain.identity.fingerprint)
    # other processes' commits wake this one: inotify on an SQLite file, LISTEN/NOTIFY on PostgreSQL
    outside = outside_writes.watcher(domain.path, domain.store, domain.changed)
    watched = outside.start()
    runner = Runner(domain, sandbox, poll_seconds=None if watched else POLL_SECONDS,
                    worker_idle_seconds=domain.policy.requests.builtin_worker_idle_seconds,
                    worker_spawn=template.spawn if template is not None else None)
    try:
        runner.start()
        app = create_app(domain, isolation=isolation)
        config = uvicorn.Config(DateHeader(app), log_level=log_level, access_log=False, ssl_certfile=certfile,
                                ssl_keyfile=keyfile, lifespan="off", **LIMITS)
        server = IdleServer(config)
        quiet(app, server, runner, sandbox, outside, watched)
        build_routes(app)  # now, not in every domain's first answer to an analyst
        actual = sock.getsockname()[1]
        scheme = "https" if certfile else "http"
        shown_host = f"[{host}]" if ":" in host else host
        print(f"fednb domain '{domain.name}' serving on {scheme}://{shown_host}:{actual} "
              f"| isolation: {describe_isolation(isolation)}", flush=True)
        if sandbox is not None and not isolation.get("cgroup"):
            print(isolation.get("cgroup_details", "shared job cgroup not in force"), file=sys.stderr, flush=True)
        warning = plain_http_warning(host, certfile)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        server.run(sockets=[sock])
    finally:
        outside.close()
        runner.stop()
        if template is not None:
            template.close()
        if sandbox is not None:
            sandbox.close()
        domain.close()
        if alone is not None:
            alone.close()
        sys.stdout.flush()
