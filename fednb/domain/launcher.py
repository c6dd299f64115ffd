"""One warm process that forks every local domain server: many domains start fast and share memory.

A domain server is a Python process that imports FastAPI, uvicorn, pandas, pyarrow and scipy before
it serves: about a second of CPU and 100 MB of private memory each. A workshop laptop running a
hundred domains paid that a hundred times (50 domains took two minutes to start). The launcher pays
it once: it imports what ``fednb domain serve`` needs, freezes those objects out of the garbage
collector's reach (``gc.freeze``, so collections do not touch and copy their pages), and then forks
one child per domain on request. Each child is a full ``fednb domain serve``, in a session of its
own, with its stdout and stderr on the descriptors the caller passed; it shares the imported pages
with the launcher copy-on-write (Linux ``fork(2)``), so its own memory is what it writes.

The protocol is a Unix socketpair to the caller (:class:`Launcher`): a JSON request with two file
descriptors (stdout, stderr), answered with the child's pid and a ``pidfd`` for it (``pidfd_open(2)``:
the caller can wait for and signal exactly that process, with no pid-reuse race). The launcher
reaps its children; it dies with the thread that started it, and its children with it (SIGTERM,
so each stops in order). Only the caller's own requests reach it: nothing an analyst sends does.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from fednb.errors import FednbError

# What `fednb domain serve` imports before it serves, and what its built-in workers import (formulaic
# alone is ~0.4 s of CPU per domain otherwise), warmed once in the launcher.
WARM = ("fednb.cli", "fednb.domain.server", "fednb.domain.api.app", "fednb.domain.api.eager_routes", "fednb.domain.run.sandbox.client",
        "fednb.domain.run.sandbox.session", "fednb.domain.run.sandbox.selftest", "uvicorn",
        "uvicorn.protocols.http.h11_impl", "uvicorn.lifespan.off", "uvicorn.loops.asyncio",
        "formulaic", "pyarrow.parquet", "fednb.domain.run.workers", "fednb.domain.run.builtins",
        "duckdb", "fednb.domain.data.engines.factory", "fednb.domain.data.engines.duckdb")
START_SECONDS = 120.0
COMMAND = "fednb.cli"  # what each child runs: `fednb ARGS`


def die_with_parent(sig: int) -> None:
    """``PR_SET_PDEATHSIG``: this process gets ``sig`` when the thread that forked it ends."""
    try:
        ctypes.CDLL(None).prctl(1, sig)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# -- the launcher process ------------------------------------------------------------------------
def main(ctl_fd: int) -> None:
    die_with_parent(signal.SIGKILL)
    ctl = socket.socket(fileno=ctl_fd)
    import importlib

    for name in WARM:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    gc.collect()
    gc.freeze()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    ctl.send(b'{"ready": true}')
    poller = select.poll()
    poller.register(ctl.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll()}  # asleep until a request or a child's exit
        if wake_r in ready:
            _drain(wake_r)
            _reap()
        if ctl.fileno() in ready:
            try:
                data, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 2)
            except OSError:
                data, fds = b"", []
            if not data:
                return  # the caller is gone; our children follow (parent-death signal)
            _fork(ctl, json.loads(data), fds, (wake_r, wake_w))


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _fork(ctl: socket.socket, msg: dict, fds: list[int], own: tuple[int, int]) -> None:
    try:
        pid = os.fork()
    except OSError as exc:
        ctl.send(json.dumps({"error": f"cannot fork a domain server: {exc}"}).encode())
        for fd in fds:
            os.close(fd)
        return
    if pid == 0:
        _serve(ctl, msg, fds, own)
    pidfd = os.pidfd_open(pid)
    try:
        socket.send_fds(ctl, [json.dumps({"pid": pid}).encode()], [pidfd])
    finally:
        os.close(pidfd)
        for fd in fds:
            os.close(fd)


def _serve(ctl: socket.socket, msg: dict, fds: list[int], own: tuple[int, int]) -> None:
    """In the child: become ``fednb domain serve ARGS`` with the caller's environment; never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        ctl.close()
        for fd in own:
            os.close(fd)
        os.setsid()
        die_with_parent(signal.SIGTERM)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in (devnull, *fds):
            os.close(fd)
        os.environ.clear()
        os.environ.update(msg["env"])
        sys.argv = ["fednb", *msg["args"]]
        # the command line by name, like the modules warmed above: the launcher is a fork server for
        # `fednb ARGS` and depends on nothing it runs
        importlib.import_module(COMMAND).main.main(args=msg["args"], prog_name="fednb")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


# -- the caller's side ---------------------------------------------------------------------------
class Forked:
    """A process forked by a warm parent of ours (the launcher, or a server's worker template), seen
    through its pidfd: the parts of ``subprocess.Popen`` that the servers' and workers' owners use.
    ``reap(pid)``, where given, asks that parent for the exit status once the process has ended."""

    def __init__(self, pid: int, pidfd: int, stdout: Any, stdin: Any = None, reap: Any = None):
        self.pid, self._pidfd, self.stdout, self.stdin = pid, pidfd, stdout, stdin
        self.returncode: int | None = None
        self._signalled = 0
        self._reap = reap

    def _ended(self, timeout: float | None) -> bool:
        if self.returncode is None and select.select([self._pidfd], [], [], timeout)[0]:
            status = self._reap(self.pid) if self._reap is not None else None
            self.returncode = status if status is not None else (-self._signalled if self._signalled else 0)
            os.close(self._pidfd)
        return self.returncode is not None

    def poll(self) -> int | None:
        self._ended(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended(timeout):
            raise subprocess.TimeoutExpired(f"process {self.pid}", timeout or 0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            self._signalled = sig
            try:
                signal.pidfd_send_signal(self._pidfd, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class Launcher:
    """The caller's end: starts the launcher process on first use, then forks servers through it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.proc: subprocess.Popen | None = None

    def _start(self, popen) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        import fednb

        root = os.path.dirname(os.path.dirname(os.path.abspath(fednb.__file__)))
        boot = "import sys; sys.path.insert(0, sys.argv[1]); from fednb.domain.launcher import main; main(int(sys.argv[2]))"
        try:
            self.proc = popen([sys.executable, "-c", boot, root, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"},
                              preexec_fn=lambda: die_with_parent(signal.SIGKILL))
        finally:
            theirs.close()
        if not select.select([ours], [], [], START_SECONDS)[0] or not ours.recv(64):
            ours.close()
            self.proc.kill()
            raise FednbError("the domain launcher did not start; see the error above")
        self._sock = ours

    def fork(self, popen, args: list[str], env: dict[str, str], stderr_fd: int) -> Forked:
        """``fednb ARGS`` in a child of the launcher (started with ``popen`` on first use)."""
        read, write = os.pipe2(os.O_CLOEXEC)
        try:
            with self._lock:
                if self._sock is None or self.proc is None or self.proc.poll() is not None:
                    self._start(popen)
                socket.send_fds(self._sock, [json.dumps({"args": args, "env": env}).encode()], [write, stderr_fd])
                data, fds, _, _ = socket.recv_fds(self._sock, 1 << 16, 1)
        except OSError as exc:
            os.close(read)
            raise FednbError(f"the domain launcher failed: {exc}") from None
        finally:
            os.close(write)
        answer = json.loads(data or b"{}")
        if "pid" not in answer or not fds:
            os.close(read)
            raise FednbError(answer.get("error", "the domain launcher stopped"))
        return Forked(answer["pid"], fds[0], os.fdopen(read, "rb"))

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None
