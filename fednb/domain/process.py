"""Running ``fednb domain serve`` as a child process: the demo, the tests and the benchmarks use it.

The child gets its own session (a terminal's Ctrl-C reaches only the parent, which stops it in
order) and, on Linux, dies with its parent (``PR_SET_PDEATHSIG``), so nothing is left behind. On
Linux the servers are forked from one warm launcher process (:mod:`fednb.domain.launcher`) instead of
each starting a fresh Python: they start in a fraction of the time and share their imported code's
memory, which is what lets a laptop run a hundred of them.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from fednb.errors import FednbError

READY = "serving on "


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Spawner:
    """Forks every server from one long-lived thread.

    Linux sends the parent-death signal when the *thread* that forked the child ends, not the
    process: a server started from a short-lived thread (a thread pool, ``asyncio.to_thread``) would
    be stopped as soon as that thread finished.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, *args, **kwargs) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="fednb-spawner", daemon=True)
                self._thread.start()
        done: Future = Future()
        self._jobs.put((args, kwargs, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            args, kwargs, done = self._jobs.get()
            try:
                done.set_result(subprocess.Popen(*args, **kwargs))
            except BaseException as exc:  # handed to the caller
                done.set_exception(exc)


_spawner = _Spawner()
_launcher = None  # made on the first lean launch
_launcher_lock = threading.Lock()  # servers launched from several threads at once share one launcher


def _lean_launcher():
    """The shared launcher where this platform can fork servers from it (Linux pidfds), else None."""
    global _launcher
    if sys.platform != "linux" or not hasattr(os, "pidfd_open") or not hasattr(signal, "pidfd_send_signal"):
        return None
    with _launcher_lock:  # two launchers made at once: the one dropped would take its servers with it
        if _launcher is None:
            from fednb.domain.launcher import Launcher

            _launcher = Launcher()
    return _launcher


def launcher_pid() -> int | None:
    """The launcher's pid while it runs (benchmarks count its memory, shared by every server)."""
    return _launcher.pid if _launcher is not None else None


class DomainProcess:
    """``fednb domain serve PATH`` on ``host:port`` (0: a free port), stderr to ``PATH/server.log``."""

    def __init__(self, path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 0,
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None, lean: bool = True):
        self.lean = lean  # fork from the shared launcher (Linux); False: a fresh `python -m fednb`
        self.path = Path(path)
        self.host, self.port = host, port
        self.extra_args = list(extra_args or [])
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.banner: str = ""

    def start(self, timeout: float = 60) -> str:
        """Start the server; returns its URL once it listens."""
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process without waiting (launch several, then :meth:`wait_ready` each)."""
        args = ["domain", "serve", str(self.path), "--host", self.host, "--port", str(self.port), *self.extra_args]
        log = open(self.path / "server.log", "ab")
        env = {**os.environ, **(self.env or {}), "PYTHONUNBUFFERED": "1"}
        launcher = _lean_launcher() if self.lean else None
        try:
            self.proc = None
            if launcher is not None:
                try:
                    self.proc = launcher.fork(_spawner.popen, args, env, log.fileno())
                except FednbError as exc:  # the fresh Python below still serves
                    log.write(f"fednb: {exc}; starting the server as its own process\n".encode())
                    log.flush()
            if self.proc is None:
                self.proc = _spawner.popen([sys.executable, "-m", "fednb", *args], stdout=subprocess.PIPE, stderr=log,
                                           env=env, start_new_session=True,
                                           preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        finally:
            log.close()
        self._found: list[str] = []
        self._ready = threading.Event()

        def drain() -> None:  # read the banner, then keep the pipe empty
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").strip()
                if READY in line and not self._found:
                    self._found.append(line)
                    self._ready.set()
            self._ready.set()

        threading.Thread(target=drain, daemon=True).start()

    def wait_ready(self, timeout: float = 60) -> str:
        found = self._found
        if not self._ready.wait(timeout) or not found:
            self.kill()
            tail = (self.path / "server.log").read_text(errors="replace")[-2000:]
            raise FednbError(f"the domain server in {self.path} did not start:\n{tail}")
        self.banner = found[0]
        self.url = self.banner.split(READY, 1)[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.url

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9, as a crash would (for durability tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, timeout: float = 60) -> str:
        """Start again on the same port (after a kill)."""
        self.stop()
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.start(timeout)
            except FednbError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def __enter__(self) -> DomainProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
