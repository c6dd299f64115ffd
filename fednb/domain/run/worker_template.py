"""Built-in workers forked from a warm template of the server, not started as fresh Pythons.

A built-in worker (:mod:`fednb.domain.run.workers`) started as ``python -m ...`` imports pandas,
pyarrow and formulaic again: a second or more of CPU, and on a laptop running many domains the first
pooled statistic waited for a hundred such starts. The server already imported most of that. So
:func:`fork_template`, called first thing in ``fednb domain serve`` while the process has a single
thread (fork is only safe then), forks a small template process that waits on a socket. Asked for
a worker, it imports the workers' modules once (on the first request), forks, and the child becomes
the worker on the pipes the server passed: the same ``main`` and the same limits (address-space cap,
CPU limit, wall clock) as before, sharing the imported pages copy-on-write with the server.

The template answers with the worker's pid and a ``pidfd`` (so the server waits for and kills exactly
that process) and, when the server asks after the worker ended, its exit status (a SIGXCPU death
must still read as the CPU limit). It reaps only on request, so no pid is reused meanwhile. It dies
with the server (parent-death signal, and end of file on its socket); its workers die with it.
Where pidfds are missing, or the server already runs threads, workers start the old way.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence

from fednb.domain.launcher import Forked, die_with_parent


def usable() -> bool:
    return sys.platform == "linux" and hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


class WorkerTemplate:
    """The server's end of the template: :meth:`spawn` returns a started worker (Popen-like)."""

    def __init__(self, pid: int, sock: socket.socket):
        self.pid, self._sock = pid, sock
        self._lock = threading.Lock()
        self.forks = 0  # workers forked so far

    def _ask(self, msg: dict, fds: list[int] = ()) -> tuple[dict, list[int]]:
        with self._lock:
            socket.send_fds(self._sock, [json.dumps(msg).encode()], list(fds))
            data, got, _, _ = socket.recv_fds(self._sock, 4096, 1)
        if not data:
            raise OSError("the worker template has stopped")
        return json.loads(data), got

    def spawn(self, memory_mb: int, ahead: Sequence[dict] = ()) -> Forked:
        """A worker forked now; ``ahead``: the datasets it opens before its first job
        (:meth:`fednb.domain.run.workers.Engines.open_ahead`)."""
        to_worker_r, to_worker_w = os.pipe2(os.O_CLOEXEC)
        from_worker_r, from_worker_w = os.pipe2(os.O_CLOEXEC)
        try:
            request = {"op": "fork", "memory_mb": int(memory_mb), "ahead": list(ahead)}
            if len(json.dumps(request)) > MAX_MESSAGE:  # the worker then opens each dataset at its first job
                request["ahead"] = []
            answer, fds = self._ask(request, [to_worker_r, from_worker_w])
        except OSError:
            for fd in (to_worker_w, from_worker_r):
                os.close(fd)
            raise
        finally:
            os.close(to_worker_r)
            os.close(from_worker_w)
        if "pid" not in answer or not fds:
            os.close(to_worker_w)
            os.close(from_worker_r)
            raise OSError(answer.get("error", "the worker template could not fork"))
        self.forks += 1
        return Forked(answer["pid"], fds[0], os.fdopen(from_worker_r, "rb", buffering=0),
                      stdin=os.fdopen(to_worker_w, "wb"), reap=self._status)

    def _status(self, pid: int) -> int | None:
        try:
            answer, _ = self._ask({"op": "reap", "pid": pid})
        except OSError:
            return None
        return answer.get("status")

    def close(self) -> None:
        try:
            self._sock.close()  # the template sees end of file and exits
        except OSError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def fork_template(close: tuple[int, ...] = ()) -> WorkerTemplate | None:
    """Fork the template from this (single-threaded) process; None where that cannot be done safely.
    ``close``: descriptors the template and its workers must not hold (a server's listening socket:
    held by a process that never accepts, it would keep the port bound after the server died)."""
    if not usable() or threading.active_count() > 1:
        return None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        return None
    if pid == 0:
        code = 0
        try:
            ours.close()
            for fd in close:
                os.close(fd)
            die_with_parent(signal.SIGKILL)
            _serve(theirs)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    theirs.close()
    return WorkerTemplate(pid, ours)


def _serve(sock: socket.socket) -> None:
    """The template's loop: asleep in recv until the server asks for a worker or a status."""
    warmed = False
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 2)
        except OSError:
            return
        if not data:
            return
        msg = json.loads(data)
        if msg.get("op") == "reap":
            try:
                _, status = os.waitpid(int(msg["pid"]), 0)
                sock.send(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode())
            except ChildProcessError:
                sock.send(b"{}")
            continue
        if not warmed:
            _warm()
            warmed = True
        _fork_worker(sock, int(msg.get("memory_mb", 1024)), fds, msg.get("ahead") or [])


MAX_MESSAGE = 1 << 16  # a request: the worker's memory cap and the datasets it opens ahead
WARM = ("duckdb", "formulaic", "pyarrow.parquet", "fednb.domain.data.engines.factory",
        "fednb.domain.data.engines.duckdb", "fednb.domain.run.builtins", "fednb.domain.run.workers")


def _warm() -> None:
    """What every worker imports and its allocator settings, once, here: the forks then start with
    them. A module that is missing (an optional engine) is left to the worker, which says so for the
    job that needs it: the template must never die of it, or every worker would start as a fresh
    Python again. The imported objects are then frozen out of the garbage collector, whose passes
    would otherwise write to (and so copy) every shared page in every worker."""
    import gc
    import importlib

    for name in WARM:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    _lean_allocators()
    gc.freeze()


def _fork_worker(sock: socket.socket, memory_mb: int, fds: list[int], ahead: list[dict]) -> None:
    try:
        pid = os.fork()
    except OSError as exc:
        sock.send(json.dumps({"error": f"cannot fork a worker: {exc}"}).encode())
        for fd in fds:
            os.close(fd)
        return
    if pid == 0:
        _become_worker(sock, memory_mb, fds, ahead)
    pidfd = os.pidfd_open(pid)
    try:
        socket.send_fds(sock, [json.dumps({"pid": pid}).encode()], [pidfd])
    finally:
        os.close(pidfd)
        for fd in fds:
            os.close(fd)


def _become_worker(sock: socket.socket, memory_mb: int, fds: list[int], ahead: list[dict]) -> None:
    """In the forked child: the worker's pipes on stdin and stdout, then the worker's own ``main``
    (which sets its limits and opens the ``ahead`` datasets). Never returns."""
    code = 1
    try:
        sock.close()
        os.dup2(fds[0], 0)
        os.dup2(fds[1], 1)
        for fd in fds:
            os.close(fd)
        sys.stdin = os.fdopen(0, "r", closefd=False)
        sys.stdout = os.fdopen(1, "w", closefd=False)
        from fednb.domain.run import workers

        workers.main(memory_mb, ahead)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _lean_allocators() -> None:
    """What the exec'd worker gets from its environment (one BLAS thread, glibc's arenas capped,
    Arrow on the system allocator), applied at run time since the libraries are already loaded: once,
    here in the template (each fork inherits them), not in every worker (threadpoolctl's look at the
    loaded libraries alone is ~10 ms of CPU per start)."""
    import ctypes

    os.environ.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                       "NUMEXPR_NUM_THREADS": "1", "ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_ARENA_MAX": "2"})
    try:
        ctypes.CDLL(None).mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass
    try:
        import pyarrow

        pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
