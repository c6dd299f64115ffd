"""The Sandbox: the domain's handle on a warm, locked-down fork server for analyst code."""

from __future__ import annotations

import atexit
import math
import os
import threading
import weakref
from pathlib import Path

from fednb.domain.run.sandbox import harness, jobs, selftest
from fednb.domain.run.sandbox.cgroup import JobsCgroup
from fednb.domain.run.sandbox.link import NotSubmitted, ZygoteLink
from fednb.domain.run.sandbox.session import Session
from fednb.domain.run.sandbox.spec import JobOutcome, JobSpec
from fednb.errors import SandboxError

FORMATS = ("parquet", "csv")


class Sandbox:
    """Runs approved analyst code on private data, one locked-down process per job.

    ``datasets_dir`` is the only data a job may read (its own dataset, loaded for it); its parent,
    the domain folder, holds the store and tokens that no job may see. ``warm`` are modules the
    zygote imports before it forks. ``namespaces=False`` skips the zygote's namespaces (the
    "standard" level: landlock + seccomp carry the walls alone). ``cgroup`` (see
    :func:`fednb.domain.run.sandbox.cgroup.create`) caps all jobs together; the sandbox owns it from
    then on and removes it on close. With ``idle_seconds``, the zygote (about 100 MB with pandas
    warm) is stopped once no job or training worker has used it for that long, and :meth:`sleep`
    stops it at once; the next job starts it again, with a fresh self-test probe.

        with Sandbox("hospital-a/datasets") as sb:
            out = sb.run(JobSpec(job_id="1", code=src, entry="mean_age", args={}, ...))
    """

    def __init__(self, datasets_dir: str | Path, *, warm: tuple[str, ...] = ("numpy", "pandas"),
                 namespaces: bool = True, cgroup: JobsCgroup | None = None, idle_seconds: float | None = None):
        self.cgroup = cgroup
        self.idle_seconds = idle_seconds
        self.starts = 0  # zygotes started so far (the owner's view of lazy starts)
        self._active = 0  # jobs in flight
        self._idle_timer: threading.Timer | None = None
        try:
            self._check_folders(datasets_dir, warm)
        except SandboxError:
            if cgroup is not None:
                cgroup.close()
            raise
        self.warm = tuple(warm)
        self.namespaces = namespaces
        self._lock = threading.RLock()
        self._link: ZygoteLink | None = None
        self._isolation: dict = {}
        self._closed = False
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        atexit.register(self.close)

    def _check_folders(self, datasets_dir: str | Path, warm: tuple[str, ...]) -> None:
        self.datasets_dir = Path(datasets_dir).resolve()
        if not self.datasets_dir.is_dir():
            raise SandboxError(f"datasets folder {self.datasets_dir} does not exist; create it first")
        self.domain_dir = self.datasets_dir.parent
        if self.domain_dir == Path("/"):
            raise SandboxError("the datasets folder must be inside a domain folder, not directly under /")
        for name in warm:
            if not all(part.isidentifier() for part in name.split(".")):
                raise SandboxError(f"cannot warm {name!r}: not a module name")

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> dict:
        """Start the zygote (if not running), run the self-test probe, return the isolation report."""
        with self._lock:
            if self._closed:
                raise SandboxError("this sandbox is closed; create a new Sandbox")
            if self._link is not None and self._link.alive:
                return dict(self._isolation)
            if self._link is not None:
                self._link.close()
                self._link = None
            self._link = self._start_link()
            self.starts += 1
            out, reached = selftest.run_probe(lambda spec: jobs.run(self._link, spec), self.domain_dir)
            self._isolation = selftest.report(self._link.ready, out, reached)
            self._isolation.update(self._cgroup_report())
            return dict(self._isolation)

    def _cgroup_report(self) -> dict:
        """In force only if the limits are written and the self-test job was charged to the group."""
        cg = self.cgroup
        if cg is None:
            return {"cgroup": False, "cgroup_details": "no shared job cgroup was asked for"}
        held = cg.limits and cg.cpu_used_us() > 0
        note = cg.note if held or not cg.limits else f"{cg.note}, but the self-test job did not run in it"
        return {"cgroup": held, "cgroup_details": note, "details": f"{self._isolation.get('details', '')}; {note}"}

    def _start_link(self) -> ZygoteLink:
        config = {"datasets_dir": str(self.datasets_dir), "domain_dir": str(self.domain_dir),
                  "warm": list(self.warm)}
        procs = self.cgroup.open_procs() if self.cgroup is not None else None
        if procs is not None:
            config["cgroup_fd"] = procs
        try:
            try:
                link = ZygoteLink({**config, "namespaces": self.namespaces})
            except SandboxError as first:
                if not self.namespaces:
                    raise
                # Namespaces failed in a way enter() could not see (e.g. a mount refused): go without.
                link = ZygoteLink({**config, "namespaces": False})
                link.ready["notes"] = [f"namespaces failed: {first}"] + list(link.ready.get("notes") or [])
        finally:
            if procs is not None:
                os.close(procs)  # the zygote holds its own copy
        link.cgroup = self.cgroup
        return link

    def wake(self) -> dict:
        """Start the zygote if it sleeps (with its self-test) and return the isolation that holds now,
        so a caller can check it against the policy before it runs a job."""
        with self._lock:
            if self._closed:
                raise SandboxError("this sandbox is closed; create a new Sandbox")
            if self._link is None or not self._link.alive:
                self.start()
            if self._active == 0:
                self._idle_later()  # a fresh idle period, so it is not stopped between here and the job
            return dict(self._isolation)

    def sleep(self) -> None:
        """Stop the zygote now if no job or training worker uses it; the next job starts it again."""
        with self._lock:
            if self._active or any(session.alive for session in self._sessions):
                self._idle_later()
                return
            link, self._link = self._link, None
        if link is not None:
            link.close()

    def _idle_later(self) -> None:
        """(Re)arm the idle timer; called with the lock held. One timer thread at most, which
        sleeps until its deadline: no polling."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self.idle_seconds is None or self._closed:
            return
        self._idle_timer = threading.Timer(self.idle_seconds, self.sleep)
        self._idle_timer.daemon = True
        self._idle_timer.start()

    def _busy(self, delta: int) -> None:
        with self._lock:
            self._active += delta
            if delta > 0 and self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            elif delta < 0 and self._active == 0:
                self._idle_later()

    @property
    def isolation(self) -> dict:
        """The report of the last start(): what held in the self-test probe."""
        return dict(self._isolation)

    @property
    def zygote_pid(self) -> int | None:
        """Host pid of the fork server (pid 1 of its namespace), None when not running."""
        link = self._link
        return link.host_pid if link is not None and link.alive else None

    def _ready_link(self) -> ZygoteLink:
        with self._lock:
            if self._closed:
                raise SandboxError("this sandbox is closed; create a new Sandbox")
            if self._link is None or not self._link.alive:
                self.start()
            if self._isolation.get("level") == "none":
                raise SandboxError("the sandbox self-test failed, so analyst code is refused: "
                                   + self._isolation.get("details", ""))
            return self._link

    def close(self) -> None:
        """Kill the zygote and every job; leaves no process behind. Idempotent."""
        with self._lock:
            self._closed = True
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            link, self._link = self._link, None
            sessions = list(self._sessions)
        for session in sessions:
            session.abandon("the sandbox was closed")
        if link is not None:
            link.close()
        if self.cgroup is not None:
            self.cgroup.close()
        atexit.unregister(self.close)

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- jobs ---------------------------------------------------------------------------------
    def run(self, spec: JobSpec) -> JobOutcome:
        """Run one job and wait for it. Thread-safe."""
        self._check(spec)
        self._busy(+1)
        try:
            try:
                return jobs.run(self._ready_link(), spec)
            except NotSubmitted:  # the zygote died just now; nothing ran: once more on a fresh one
                return jobs.run(self._ready_link(), spec)
        finally:
            self._busy(-1)

    def session(self, spec: JobSpec) -> Session:
        """A kept-alive worker for the rounds of one request (same lockdown; see Session)."""
        self._check(spec)
        self._busy(+1)
        try:
            try:
                session = Session(self._ready_link(), spec)
            except NotSubmitted:
                session = Session(self._ready_link(), spec)
            self._sessions.add(session)
        finally:
            self._busy(-1)  # the timer then finds the live session and waits on
        return session

    def _check(self, spec: JobSpec) -> None:
        if spec.data_format not in FORMATS:
            raise SandboxError(f"data_format must be one of {', '.join(FORMATS)}, not {spec.data_format!r}")
        path = Path(spec.data_path)
        if not path.is_absolute() or not path.resolve().is_relative_to(self.datasets_dir) \
                or not path.resolve().is_file():
            raise SandboxError(f"dataset {spec.data_path} is not a file inside {self.datasets_dir}")
        if spec.harness not in harness.names():
            raise SandboxError(f"unknown harness {spec.harness!r}; known: {', '.join(harness.names())}")
        if spec.probe_fraction is not None and not 0 < spec.probe_fraction < 1:
            raise SandboxError("probe_fraction must be between 0 and 1 (exclusive) or None")
        lim = spec.limits
        for name in ("cpu_seconds", "wall_seconds", "memory_mb", "max_output_bytes", "max_file_mb", "tmp_mb",
                     "max_open_files"):
            value = getattr(lim, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise SandboxError(f"limit {name} must be a positive number, not {value!r}")
