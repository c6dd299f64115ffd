"""One kept-alive sandboxed worker for the rounds of one approved request.

Same lockdown as a job; state survives between rounds by design, so a session serves one request
of one analyst only. RLIMIT_CPU budgets the whole session; the wall limit applies per call. A call
that times out, sends a bad frame or too much output kills the worker.
"""

from __future__ import annotations

import os
import threading
import time
import weakref

from fednb.domain.run.sandbox import frames, jobs, outcome
from fednb.domain.run.sandbox.link import ZygoteLink
from fednb.domain.run.sandbox.spec import JobOutcome, JobSpec
from fednb.errors import SandboxError

ROUND_STATUSES = ("ok", "error", "memory", "output_too_large")


class Session:
    def __init__(self, link: ZygoteLink, spec: JobSpec):
        self.spec = spec
        self._link = link
        self._lock = threading.Lock()
        self._dead = ""
        self._ooms = 0
        memfd = jobs.spec_memfd(spec)
        r, w = os.pipe2(os.O_CLOEXEC)
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        try:
            self._id, self._waiter = link.dispatch({"op": "job", "limits": spec.limits.to_json(),
                                                  "deadline_s": None, "session": True}, [memfd, w, in_r])
        except BaseException:
            os.close(r)
            os.close(in_w)
            raise
        finally:
            for fd in (memfd, w, in_r):
                os.close(fd)
        self._reader = frames.Reader(r)
        self._in = in_w
        os.set_blocking(in_w, False)
        # Dropped without close(): closing our ends lets the worker see end of input and exit.
        self._open_fds = [in_w, r]
        weakref.finalize(self, _close_all, self._open_fds)

    @property
    def alive(self) -> bool:
        return not self._dead

    def call(self, inputs: dict | None = None, blob: bytes | None = None) -> JobOutcome:
        """One round: ``inputs`` (JSON) and optional raw bytes in, a JobOutcome out."""
        with self._lock:
            if self._dead:
                raise SandboxError(f"this sandbox session has ended: {self._dead}")
            t0 = time.monotonic()
            deadline = t0 + self.spec.limits.wall_seconds
            self._ooms = jobs.oom_kills(self._link)
            out = self._round(inputs, blob, t0, deadline)
            out.wall_ms = (time.monotonic() - t0) * 1000
            return out

    def _round(self, inputs: dict | None, blob: bytes | None, t0: float, deadline: float) -> JobOutcome:
        try:
            frames.write_all(self._in, frames.pack({"inputs": inputs}, blob), deadline)
        except TimeoutError:
            return self._end("timeout", "the worker did not take its input in time; it was stopped")
        except (BrokenPipeError, OSError):
            return self._died(t0)
        state, data = self._reader.read_frame(deadline, jobs.output_cap(self.spec))
        if state == "deadline":
            return self._end("timeout", f"the round ran longer than its wall-clock limit of "
                                        f"{self.spec.limits.wall_seconds:g} s; the worker was stopped")
        if state == "cap":
            return self._end("output_too_large", f"the round wrote more than its output limit "
                                                 f"({self.spec.limits.max_output_bytes} bytes); the worker was stopped")
        if state == "eof":
            return self._died(t0)
        try:
            envelope, _ = frames.unpack(data)
        except frames.FrameError as e:
            return self._end("bad_output", f"the worker's result could not be read: {e}")
        status = envelope.get("status")
        if status not in ROUND_STATUSES:
            return self._end("bad_output", "the worker's result has no valid status")
        return outcome.fill(JobOutcome(status), status, data, self.spec, t0)

    def _died(self, t0: float) -> JobOutcome:
        """The worker exited during a round: the zygote's exit event says why."""
        event = self._waiter.wait(self.spec.limits.wall_seconds + jobs.BACKSTOP_S) or {"event": "lost"}
        self._dead = "the worker exited"
        self._close_fds()
        if event.get("event") == "exit" and event.get("exitcode") == 0 and not event.get("signal"):
            return JobOutcome("killed", message="the worker exited during the round")
        out = outcome.from_exit(event, self.spec, b"", over_cap=False, t_sent=t0)
        return jobs.shared_cap(out, event, self._link, self._ooms)

    def _end(self, status: str, message: str) -> JobOutcome:
        self._kill(message)
        return JobOutcome(status, message=message)

    def _kill(self, why: str) -> None:
        self._dead = why
        self._link.kill(self._id)
        self._close_fds()
        self._waiter.wait(jobs.BACKSTOP_S)

    def _close_fds(self) -> None:
        _close_all(self._open_fds)
        self._in = self._reader.fd = -1

    def abandon(self, why: str) -> None:
        """The sandbox is closing and kills the worker itself: just mark this session ended.

        A call in flight on another thread sees the worker die and cleans up after itself."""
        self._dead = self._dead or why
        if self._lock.acquire(blocking=False):
            try:
                self._close_fds()
            finally:
                self._lock.release()

    def close(self) -> None:
        """End the worker: it sees end of input and exits; killed if it does not. Idempotent."""
        with self._lock:
            if self._dead:
                return
            self._dead = "closed"
            os.close(self._in)
            self._open_fds.remove(self._in)
            self._in = -1
            if self._waiter.wait(1.0) is None:
                self._link.kill(self._id)
                self._waiter.wait(jobs.BACKSTOP_S)
            self._close_fds()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_all(fds: list[int]) -> None:
    """Close each fd once (the list is shared with the finalizer, so no fd is closed twice)."""
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass
