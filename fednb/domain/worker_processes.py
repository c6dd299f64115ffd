"""``fednb domain serve --workers N``: several server processes for one domain on PostgreSQL.

The parent binds the port, re-queues what a crash left running (holding the store's exclusive
serving lock, :mod:`fednb.domain.store.serving`), then forks N workers. Each worker is a whole server
(HTTP API, job runner, sandbox) sharing the listening socket; the kernel spreads connections over
them. The store keeps them consistent: writes are serialized, a job is claimed by one worker
(``FOR UPDATE SKIP LOCKED``), and a budget's check and debit share one transaction. Each commit
wakes the other workers (:mod:`fednb.domain.store.commit_notices`), so a job queued by one is run
at once by whichever claims it, and an idle worker sleeps like a single server.

If the parent dies (kill -9 included), its workers are killed at once (``PR_SET_PDEATHSIG``): a
crash of the domain is a crash of all its processes, recovered at the next start. If one worker
dies, the parent stops the others and exits non-zero, for the service manager to restart the domain.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

from fednb.domain.domain import Domain
from fednb.errors import FednbError

log = logging.getLogger("fednb.domain.worker_processes")


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def serve_workers(path: str | Path, host: str, port: int, workers: int, *, certfile: str | None = None,
                  keyfile: str | None = None, log_level: str = "warning") -> None:
    from fednb.domain.run.runner import Runner
    from fednb.domain.server import bind, check_tls, plain_http_warning
    from fednb.domain.store import serving

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if certfile:
        check_tls(certfile, keyfile or certfile)
    domain = Domain(path)
    if domain.store.dialect != "postgresql":
        domain.close()
        raise FednbError("--workers needs the domain's store on PostgreSQL (fednb domain init DIR --store "
                         "postgresql://...): several processes cannot share SQLite's single writer safely")
    # listen first: connections made while the domain recovers and its workers start wait in the
    # backlog instead of being refused
    sock = bind(host, port)
    with serving.recovering(domain.store):
        Runner(domain).recover()
        name = domain.name
        domain.close()
        pids = [_fork_worker(path, sock, i, certfile, keyfile, log_level) for i in range(workers)]
    actual = sock.getsockname()[1]
    scheme = "https" if certfile else "http"
    shown_host = f"[{host}]" if ":" in host else host
    print(f"fednb domain '{name}' serving on {scheme}://{shown_host}:{actual} | {workers} worker processes",
          flush=True)
    warning = plain_http_warning(host, certfile)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    sys.exit(_supervise(pids))


def _fork_worker(path, sock, index: int, certfile, keyfile, log_level) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        _die_with_parent()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers, in order
        _worker(path, sock, index, certfile, keyfile, log_level)
        code = 0
    except BaseException:  # a worker that cannot serve says why in the server log, then exits
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _worker(path, sock, index: int, certfile, keyfile, log_level) -> None:
    import uvicorn

    from fednb.domain.api.app import create_app
    from fednb.domain.api.eager_routes import build_routes
    from fednb.domain.api.idle_server import DateHeader, IdleServer
    from fednb.domain.audit import sovereignty
    from fednb.domain.run import worker_template
    from fednb.domain.run.runner import POLL_SECONDS, Runner
    from fednb.domain.server import LIMITS, quiet, start_sandbox
    from fednb.domain.store import outside_writes, serving

    template = worker_template.fork_template(close=(sock.fileno(),))  # first, while single-threaded
    domain = Domain(path)
    held = serving.serving(domain.store)  # waits until the parent's recovery is over
    sandbox, isolation = start_sandbox(domain)
    sovereignty.watch(domain.path, isolation, domain.identity.fingerprint)
    # the other processes' commits (a job queued by one, run by another) wake this one at once
    outside = outside_writes.watcher(domain.path, domain.store, domain.changed)
    watched = outside.start()
    runner = Runner(domain, sandbox, poll_seconds=None if watched else POLL_SECONDS,
                    worker_idle_seconds=domain.policy.requests.builtin_worker_idle_seconds,
                    worker_spawn=template.spawn if template is not None else None)
    try:
        runner.start(recover=False)
        app = create_app(domain, isolation=isolation)
        config = uvicorn.Config(DateHeader(app), log_level=log_level, access_log=False, ssl_certfile=certfile,
                                ssl_keyfile=keyfile, lifespan="off", **LIMITS)
        server = IdleServer(config)
        quiet(app, server, runner, sandbox, outside, watched)
        build_routes(app)  # now, not in this process's first answer to an analyst
        server.run(sockets=[sock])
    finally:
        outside.close()
        runner.stop()
        if template is not None:
            template.close()
        if sandbox is not None:
            sandbox.close()
        domain.close()
        held.close()


def _supervise(pids: list[int]) -> int:
    """Wait for the workers; on SIGTERM/SIGINT stop them all; if one dies, stop the rest."""
    stopping = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    alive, code = set(pids), 0
    while alive:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid not in alive:
            continue
        alive.discard(pid)
        if not stopping:
            log.error("worker process %d ended (status %d); stopping the domain's other workers", pid, status)
            code = 1
            stop()
    return code
