"""What the domain asks the sandbox to run (JobSpec, Limits) and what comes back (JobOutcome)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("ok", "error", "timeout", "cpu_limit", "memory", "killed", "output_too_large", "bad_output")


@dataclass(frozen=True)
class Limits:
    """Per-job resource limits; the zygote and the kernel enforce them."""

    cpu_seconds: float = 30
    wall_seconds: float = 60
    memory_mb: int = 1024  # address space granted above what the job holds when analyst code starts
    max_output_bytes: int = 1_000_000
    max_file_mb: int = 64  # RLIMIT_FSIZE
    tmp_mb: int = 256  # size-capped tmpfs for the job's temp dir (when namespaces are available)
    max_open_files: int = 256

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class JobSpec:
    """One execution of approved analyst code on one dataset."""

    job_id: str
    code: str
    entry: str
    args: dict
    data_path: str
    data_format: str  # "parquet" | "csv"
    harness: str = "function"
    inputs: dict | None = None
    probe_fraction: float | None = 0.5
    limits: Limits = field(default_factory=Limits)
    columns: list[str] | None = None  # the only columns the job's frame holds (None: all)

    def to_json(self) -> dict:
        """The part of the spec the child reads (sent through a memfd, never through the zygote)."""
        return {"job_id": self.job_id, "code": self.code, "entry": self.entry, "args": self.args,
                "inputs": self.inputs, "data_path": self.data_path, "data_format": self.data_format,
                "harness": self.harness, "probe_fraction": self.probe_fraction,
                "limits": self.limits.to_json(), "columns": self.columns}


@dataclass
class JobOutcome:
    """What happened. ``status`` comes from the zygote and the kernel; only ``value``/``blob``/
    ``message``/``probe`` come from the job itself."""

    status: str
    value: Any = None
    blob: bytes | None = None
    message: str = ""
    probe: dict | None = None
    wall_ms: float = 0
    start_ms: float = 0
    cpu_s: float = 0
    max_rss_mb: float = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# How the child tells the zygote what happened: the exit code is read from the kernel, not from
# anything the job wrote. Analyst code can choose its exit code too, which only lets it report a
# failure of its own job.
EXIT_BY_STATUS = {"ok": 0, "error": 10, "memory": 11, "output_too_large": 12}
STATUS_BY_EXIT = {v: k for k, v in EXIT_BY_STATUS.items()}
EXIT_SETUP = 13  # lockdown failed: analyst code did not run
EXIT_ORPHAN = 70  # the zygote died before the job could arm PDEATHSIG
