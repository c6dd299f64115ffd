"""Warm worker processes that evaluate built-ins, where a CPU, memory and wall-clock limit can stop them.

A built-in is fednb's own code, but its arguments are the analyst's: a formula, a filter, bins,
levels. Evaluated in the server process, one pathological argument (a big-integer power in a
formula, a design matrix with tens of thousands of columns) holds the GIL and freezes every
analyst and the owner. So the evaluation runs in a separate process started from the domain's own
code (``python -m fednb.domain.run.workers``): it imports pandas and the built-ins once and then
answers jobs one JSON line at a time, so a built-in keeps its millisecond latency. Each job runs
under a soft ``RLIMIT_CPU`` (SIGXCPU ends the process), an ``RLIMIT_AS`` address-space cap, and a
wall-clock deadline after which the parent kills the process and starts a fresh one. The worker
answers with JSON only: nothing from a process that evaluated analyst input is ever unpickled.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fednb.domain.run import evidence_files

log = logging.getLogger("fednb.domain.run.workers")

START_SECONDS = 60.0  # importing pandas on a loaded machine; not counted against a job's wall limit
# A reply without an evidence file (fednb.domain.run.evidence_files) carries the row sets behind a
# release itself (Roaring bitmaps, up to rows/8 bytes per set and cell, base64): a crosstab over ten
# million rows needs ~20 MB of them. With the file, a reply is a few kilobytes.
MAX_REPLY_BYTES = 256_000_000
# Datasets a worker started ahead of its first job opens (a DuckDB connection each, a few MB): a
# domain with more opens the rest when they are first used.
AHEAD_DATASETS = 16
# A worker started ahead rehearses one count over a dataset at most this big (a count's row set over
# it costs about a millisecond), so that its first job does not run the built-ins' code for the
# first time.
REHEARSAL_ROWS = 100_000
_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
# Arrow's own allocator and glibc's per-thread arenas reserve address space by the GiB (a 200,000-row
# read grew it by 1.2 GiB, using 56 MiB): with the system allocator and two arenas the address-space
# cap measures what a job really uses.
_ALLOCATOR_ENV = {"ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_ARENA_MAX": "2"}


@dataclass(frozen=True)
class WorkerLimits:
    """Per-job limits of a built-in worker (policy ``[requests]``)."""

    cpu_seconds: float = 15
    wall_seconds: float = 20
    memory_mb: int = 1024


def engine_settings(policy: Any) -> dict[str, Any]:
    """The ``[engine]`` settings a worker opens datasets with. ``memory_limit`` is the domain's, shared
    by its ``builtin_workers``; and DuckDB gets at most half a worker's memory cap, so pandas and
    Python keep the rest and the cap is not what stops a large scan."""
    from fednb.domain.data.engines.base import memory_bytes

    shared = memory_bytes(policy.engine.memory_limit) // policy.requests.builtin_workers
    limit = min(shared, policy.requests.builtin_memory_mb * 2**20 // 2)
    return {"memory_limit": f"{limit // 2**20}MiB", "threads": policy.engine.threads}


@dataclass
class Reply:
    """A worker's answer: ``status`` is ok, blocked, invalid, error, timeout, cpu_limit, memory or killed."""

    status: str
    result: Any = None
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


class Worker:
    """One warm worker process; ``run`` sends it a job and waits at most the wall limit for the answer."""

    def __init__(self, limits: WorkerLimits, spawn: Any = None, datasets: Any = None):
        self.limits = limits
        self.spawn = spawn  # forks a warm worker (fednb.domain.run.worker_template); None: a fresh Python
        self.datasets = datasets  # () -> the datasets a worker started ahead of its first job opens
        self.used = False  # ran a job since it started (set by the runner)
        self._proc: subprocess.Popen | None = None
        self._ready = False
        self._too_long = False

    def start(self, ahead: bool = False) -> None:
        """Start the process; ``ahead``: before any job, so it also opens :attr:`datasets` (their
        DuckDB connections and Parquet metadata) while it waits, and its first job costs what a
        warm one does."""
        self._ready = False
        self.used = False
        opened = self._datasets_to_open() if ahead else []
        if self.spawn is not None:
            try:
                self._proc = self.spawn(self.limits.memory_mb, opened)
                return
            except OSError as exc:
                log.warning("forking a warm built-in worker failed (%s); starting a fresh one", exc)
        env = {**os.environ, **{name: "1" for name in _THREAD_ENV}, **_ALLOCATOR_ENV}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "fednb.domain.run.workers", str(self.limits.memory_mb), json.dumps(opened)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        self._ready = False

    def _datasets_to_open(self) -> list[dict[str, Any]]:
        if self.datasets is None:
            return []
        try:
            return list(self.datasets())[:AHEAD_DATASETS]
        except Exception:  # a busy or closing store: the first job opens its dataset itself
            log.warning("listing the datasets to open ahead failed", exc_info=True)
            return []

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def replace(self) -> None:
        """Kill this process and start the next one now, so it is warm when the next job comes."""
        self.close()
        self.start()

    def run(self, job: dict[str, Any]) -> Reply:
        """Evaluate ``job`` (see :func:`evaluate`); never raises for anything the job does. With
        ``job["evidence_file"]`` the worker writes the row sets there and the reply's evidence reads
        them from it (:mod:`fednb.domain.run.evidence_files`); the file is gone when the reply is not
        an ``ok`` with row sets."""
        path = job.get("evidence_file")
        reply = self._exchange(job)
        return reply if path is None else _with_evidence_file(reply, Path(path))

    def _exchange(self, job: dict[str, Any]) -> Reply:
        if self._proc is None or self._proc.poll() is not None:
            self.start()
        if not self._ready:
            hello = self._read_line(time.monotonic() + START_SECONDS)
            if hello is None or json.loads(hello).get("status") != "ready":
                self.close()
                return Reply("error", reason="the domain's built-in worker did not start")
            self._ready = True
        job = {**job, "cpu_seconds": self.limits.cpu_seconds}
        try:
            self._proc.stdin.write(json.dumps(job, allow_nan=False).encode() + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.close()
            return Reply("killed", reason="the built-in worker stopped before the job reached it")
        line = self._read_line(time.monotonic() + self.limits.wall_seconds)
        if line is None and self._too_long:
            self.replace()
            return Reply("error", reason=f"its answer was longer than {MAX_REPLY_BYTES >> 20} MiB (the rows behind "
                                         "it); ask for fewer cells or a narrower filter")
        if line is None:
            return self._stopped()
        try:
            # decoded here and the bytes dropped before parsing (json.loads would keep both alive
            # beside its result): a reply of row sets is held twice at most, not three times
            text, line = line.decode(), None
            answer = json.loads(text)
        except ValueError:
            self.close()
            return Reply("error", reason="the built-in worker answered with something that is not JSON")
        if answer.get("status") == "memory":  # the process may be fragmented: start a clean one
            self.replace()
        return Reply(answer.get("status", "error"), answer.get("result"), answer.get("reason", ""),
                     answer.get("evidence") or {})

    def _stopped(self) -> Reply:
        """The job did not answer in time, or the process died: say which limit stopped it."""
        proc = self._proc
        timed_out = proc is not None and proc.poll() is None
        self.replace()
        code = proc.returncode if proc is not None else None
        if timed_out:
            return Reply("timeout", reason=f"it ran past the built-in wall-clock limit of "
                                           f"{self.limits.wall_seconds:g} s and was stopped")
        if code == -signal.SIGXCPU:
            return Reply("cpu_limit", reason=f"it used more than {self.limits.cpu_seconds:g} CPU seconds and "
                                             "was stopped")
        return Reply("killed", reason=f"its worker process ended unexpectedly (exit status {code})")

    def _read_line(self, deadline: float) -> bytearray | None:
        """One line from the worker before ``deadline``; None when it is late, dead or too long."""
        proc = self._proc
        fd = proc.stdout.fileno()
        self._too_long = False
        line = bytearray()  # grown in place: a reply of row sets is held once, not as pieces and a joined copy
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                proc.wait()
                return None
            line += chunk
            if chunk.endswith(b"\n"):
                return line
            if len(line) > MAX_REPLY_BYTES:
                self._too_long = True
                return None


def _with_evidence_file(reply: Reply, path: Path) -> Reply:
    """``reply`` with its row sets read from the worker's file, or a failure naming what is wrong with it."""
    if reply.status != "ok" or not reply.evidence:
        evidence_files.remove(path)
        reply.evidence = {}
        return reply
    try:
        reply.evidence = evidence_files.opened(reply.evidence, path)
    except evidence_files.UnreadableEvidence as exc:
        evidence_files.remove(path)
        return Reply("error", reason=str(exc))
    return reply


# -- inside the worker process -------------------------------------------------------------------
class Engines:
    """Each dataset's engine, opened once and reopened when its data file changes."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[Any, Any]] = {}

    def open_ahead(self, datasets: Sequence[dict[str, Any]]) -> None:
        """Open each ``{"data_path", "engine"}`` now, as its first job would, and read its columns
        (DuckDB binds the Parquet footer). Only files kept in the domain: a dataset in the owner's
        PostgreSQL or Spark would connect to another machine, which waits on the network. A dataset
        that fails to open is left to its first job, which reports why."""
        from pathlib import Path

        from fednb.domain.data.engines.base import SOURCE_FILE

        rehearsed = False
        for dataset in datasets:
            path = Path(dataset["data_path"])
            if (path.parent / SOURCE_FILE).exists():
                continue
            try:
                engine = self.get(str(path), dataset.get("engine") or {})
                engine.columns()
                if not rehearsed and engine.row_count() <= REHEARSAL_ROWS:
                    rehearsed = _rehearse(engine)
            except Exception as exc:
                log.info("opening %s ahead of its first job failed: %s", path, exc)

    def get(self, data_path: str, settings: dict[str, Any]) -> Any:
        from pathlib import Path
        from types import SimpleNamespace

        from fednb.domain.data.engines.factory import open_engine
        from fednb.domain.review.policy import EngineSection

        settings = {**EngineSection().model_dump(), **settings}  # a job may name only what it changes
        path = Path(data_path)
        key = (path.stat().st_mtime_ns if path.exists() else 0, json.dumps(settings, sort_keys=True))
        hit = self._open.get(data_path)
        if hit and hit[0] == key:
            return hit[1]
        if hit:
            hit[1].close()
        engine = open_engine(path.parent, SimpleNamespace(**settings))
        self._open[data_path] = (key, engine)
        return engine


def _rehearse(engine: Any) -> bool:
    """One ``count`` over ``engine``, its answer dropped: the first built-in a process runs pays for
    code run for the first time there (~3 ms of CPU, measured over ten forked domains), which a
    worker waiting for its first job can pay instead. Nothing leaves the worker."""
    from fednb.domain.review.policy import DisclosureSection
    from fednb.domain.run import builtins

    try:
        builtins.compute("count", {}, engine, builtins.Context(DisclosureSection(), {}), None)
    except Exception:  # blocked (a small dataset) or refused: the code ran all the same
        pass
    return True


def evaluate(job: dict[str, Any], engines: Engines) -> dict[str, Any]:
    """Run one built-in as the runner asks: ``{"name", "args", "inputs", "data_path", "engine", "rules",
    "levels", "noisy"}``, where ``engine`` is the policy's ``[engine]`` settings and ``noisy`` is
    ``{"spend", "bounds"}`` for a noisy release."""
    from fednb.domain.data.engines import EngineError
    from fednb.domain.release import noisy
    from fednb.domain.release.disclosure import Blocked
    from fednb.domain.review.policy import DisclosureSection
    from fednb.domain.run import builtins
    from fednb.domain.run.builtins.registry import REGISTRY, used_columns
    from fednb.domain.run.builtins.scan import Scan
    from fednb.errors import FednbError

    ctx = builtins.Context(DisclosureSection(**job["rules"]), job.get("levels") or {})
    try:
        engine = engines.get(job["data_path"], job.get("engine") or {})
        if job.get("noisy"):
            spend = noisy.Spend(**job["noisy"]["spend"])
            parsed = REGISTRY[job["name"]].args.model_validate(job["args"])
            scan = Scan(engine, parsed.where, ctx.levels)  # checks the filter's names and levels
            wanted = used_columns(parsed, scan.schema.columns) + [c.column for c in parsed.where]
            df = Scan(engine, []).frame(wanted)
            result = noisy.release(job["name"], job["args"], df, ctx, job["noisy"]["bounds"], spend)
        else:
            result = builtins.compute(job["name"], job["args"], engine, ctx, job.get("inputs"))
        answer: dict[str, Any] = {"status": "ok", "result": result}
    except Blocked as exc:
        answer = {"status": "blocked", "reason": str(exc)}
    except (FednbError, EngineError) as exc:
        answer = {"status": "invalid", "reason": str(exc)}
    evidence = getattr(ctx, "evidence", None)
    if evidence:
        answer["evidence"] = evidence
    return answer


def _limit_memory(memory_mb: int) -> None:
    """Cap the address space at what the imports use plus ``memory_mb``."""
    import resource

    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    cap = pages * os.sysconf("SC_PAGE_SIZE") + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _limit_cpu(seconds: float) -> None:
    """A soft CPU limit ``seconds`` beyond what this process has used so far (SIGXCPU ends it)."""
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(used.ru_utime + used.ru_stime + seconds)
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: a killed server takes its workers with it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def main(memory_mb: int, ahead: Sequence[dict[str, Any]] = ()) -> None:
    _die_with_parent()
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the replies
    import duckdb  # noqa: F401
    import formulaic  # noqa: F401  (warm, and inside the baseline of the memory cap)
    import pyarrow.parquet  # noqa: F401

    from fednb.domain.run import builtins  # noqa: F401  (warm: registers every built-in)
    from fednb.domain.run.builtins.scan import RAW_BITMAPS

    engines = Engines()
    _limit_memory(memory_mb)
    engines.open_ahead(ahead)  # under the memory cap, before any job's CPU limit

    def reply(answer: dict[str, Any], evidence_file: str | None = None) -> None:
        if evidence_file is not None and answer.get("evidence"):  # the row sets go to the server's file
            answer["evidence"] = evidence_files.write(answer["evidence"], evidence_file)
        # The row sets (``evidence``: strings and counts, megabytes at tens of millions of rows) go
        # out piece by piece, not also built as one string and then its bytes; the rest is encoded
        # first, so a result JSON cannot carry raises before anything is written.
        evidence = answer.pop("evidence", None)
        head = json.dumps(answer, allow_nan=False).encode()
        if evidence is None:
            out.write(head + b"\n")
        else:
            out.write(head[:-1] + b', "evidence": ')
            for piece in json.JSONEncoder(allow_nan=False).iterencode(evidence):
                out.write(piece.encode())
            out.write(b"}\n")
        out.flush()

    reply({"status": "ready"})
    for line in sys.stdin.buffer:
        job = json.loads(line)
        _limit_cpu(float(job.get("cpu_seconds", 15)))
        raw = RAW_BITMAPS.set("evidence_file" in job)  # row sets as bytes, bound for the file
        try:
            answer = evaluate(job, engines)
            reply(answer, job.get("evidence_file"))
        except Exception as exc:
            if not _out_of_memory(exc):
                logging.getLogger(__name__).exception("built-in %s failed", job.get("name"))
                reply({"status": "error", "reason": type(exc).__name__})
                continue
            reply({"status": "memory", "reason": f"it needed more than the built-in memory limit of "
                                                 f"{memory_mb} MiB"})
            return
        finally:
            RAW_BITMAPS.reset(raw)


def _out_of_memory(exc: BaseException | None) -> bool:
    """A MemoryError, also when a library wrapped it in an error of its own (formulaic does), and
    the engines' own: DuckDB's out-of-memory error, Arrow's failed allocation or a thread whose stack
    did not fit under the cap."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno in (errno.ENOMEM, errno.EAGAIN)):
            return True
        if type(exc).__name__ in ("OutOfMemoryException", "ArrowMemoryError") or \
                "Failed to launch worker thread" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1024, json.loads(sys.argv[2]) if len(sys.argv) > 2 else [])
