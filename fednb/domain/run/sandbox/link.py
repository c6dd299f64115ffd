"""The domain's end of one zygote: its process, control socket and a reader thread.

Thread-safe: any number of threads may dispatch jobs and wait for their exit events.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from fednb.errors import SandboxError

BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
        "from fednb.domain.run.sandbox.zygote import main; main(int(sys.argv[2]))")
# The zygote's whole environment: nothing of the domain's (tokens, keys) may reach a job's memory.
ZYGOTE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1", "JE_ARROW_MALLOC_CONF": "background_thread:false"}
READY_TIMEOUT = 120.0


class NotSubmitted(SandboxError):
    """The zygote was gone before the job reached it: nothing ran, the job may be retried."""


class ZygoteLink:
    def __init__(self, config: dict):
        import fednb

        root = str(Path(fednb.__file__).resolve().parent.parent)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._stderr = tempfile.TemporaryFile()
        extra = [config["cgroup_fd"]] if config.get("cgroup_fd") is not None else []  # same number in the zygote
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", BOOT, root, str(theirs.fileno())], env=ZYGOTE_ENV, cwd="/",
                pass_fds=[theirs.fileno(), *extra], start_new_session=True, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=self._stderr)
        finally:
            theirs.close()
        self.sock = ours
        self._send_lock = threading.Lock()
        self._waiters: dict[int, _Waiter] = {}
        self._waiters_lock = threading.Lock()
        self._ids = iter(range(1, 1 << 62))
        self.alive = True
        self.ready: dict = {}
        self._ready = _Waiter()
        self.sock.send(json.dumps({"op": "config", **config}).encode())
        self._reader = threading.Thread(target=self._read_events, name="fednb-sandbox-events", daemon=True)
        self._reader.start()
        event = self._ready.wait(READY_TIMEOUT)
        if not event or event.get("event") != "ready":
            self.close()
            raise SandboxError(f"the sandbox server did not start: {self.stderr_tail() or 'no output'}")
        self.ready = event
        self.host_pid = int(event["host_pid"])
        try:
            self._zygote_pidfd: int | None = os.pidfd_open(self.host_pid)
        except OSError:
            self._zygote_pidfd = None

    def stderr_tail(self, n: int = 2000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-n:].strip()

    def _read_events(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                break
            try:
                event = json.loads(data)
            except ValueError:
                continue
            if event.get("event") == "ready":
                self._ready.set(event)
                continue
            with self._waiters_lock:
                waiter = self._waiters.pop(event.get("id"), None)
            if waiter:
                waiter.set(event)
        self.alive = False
        self._ready.set({"event": "lost"})
        with self._waiters_lock:
            waiters, self._waiters = list(self._waiters.values()), {}
        for waiter in waiters:
            waiter.set({"event": "lost"})

    def dispatch(self, msg: dict, fds: list[int]) -> tuple[int, _Waiter]:
        """Send a job; returns its id and the waiter its exit event will be delivered to."""
        jid = next(self._ids)
        waiter = _Waiter()
        with self._waiters_lock:
            self._waiters[jid] = waiter
        try:
            with self._send_lock:
                socket.send_fds(self.sock, [json.dumps({**msg, "id": jid}).encode()], fds)
        except OSError as e:
            with self._waiters_lock:
                self._waiters.pop(jid, None)
            self.alive = False
            raise NotSubmitted(f"the sandbox server is not reachable: {e}") from None
        if not self.alive:  # the reader may have drained the waiters before ours was added
            waiter.set({"event": "lost"})
        return jid, waiter

    def kill(self, jid: int) -> None:
        try:
            with self._send_lock:
                self.sock.send(json.dumps({"op": "kill", "id": jid}).encode())
        except OSError:
            pass

    def abort(self) -> None:
        """Kill the zygote and, with it, every job (its pid namespace, or their PDEATHSIG).

        With a pid namespace the server is the exec'd process's child: kill the server and let
        its parent reap it and exit, so that no zombie is left to the host's init.
        """
        self.alive = False
        server = getattr(self, "host_pid", None)
        try:
            if server and server != self.proc.pid:
                os.kill(server, signal.SIGKILL)
            else:
                os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self, grace: float = 3.0) -> None:
        """Stop the zygote and wait until it and its jobs are gone. Idempotent."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # the zygote sees EOF: kills and reaps its jobs
        except OSError:
            pass
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.abort()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        pidfd = getattr(self, "_zygote_pidfd", None)
        if pidfd is not None:  # pid 1 of the namespace exits only after every job in it
            if not select.select([pidfd], [], [], grace)[0]:
                self.abort()
                select.select([pidfd], [], [], grace)
            os.close(pidfd)
            self._zygote_pidfd = None
        if self._reader.is_alive() and self._reader is not threading.current_thread():
            self._reader.join(grace)
        self.sock.close()
        self._stderr.close()
        self.alive = False


class _Waiter:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.value: dict | None = None

    def set(self, value: dict) -> None:
        if not self._event.is_set():
            self.value = value
            self._event.set()

    def wait(self, timeout: float | None) -> dict | None:
        self._event.wait(timeout)
        return self.value
