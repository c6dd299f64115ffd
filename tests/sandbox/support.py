"""Helpers shared by the sandbox tests (imported relatively, so one module object whatever
name pytest gives this package)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fednb.domain.run.sandbox import JobOutcome, JobSpec, Limits, Sandbox

# A fake secret in this process's environment before any Sandbox starts; no job may find it.
SECRET = os.environ.setdefault("FEDNB_TEST_SECRET", "fednb-test-secret-" + secrets.token_hex(12))
DB_SECRET = "store-secret-" + secrets.token_hex(8)
TOKEN_SECRET = "token-secret-" + secrets.token_hex(8)


@dataclass
class Domain:
    root: Path
    datasets: Path
    csv: Path
    parquet: Path
    other: Path  # another dataset the jobs here are not about
    db: Path
    tokens: Path
    frame: pd.DataFrame


class Runner:
    """``run(code, **limits)`` → JobOutcome on people.csv; the entry is ``f``."""

    def __init__(self, sb: Sandbox, domain: Domain):
        self.sb, self.domain = sb, domain

    def spec(self, code: str, *, args: dict | None = None, entry: str = "f", fmt: str = "csv",
             probe: float | None = None, inputs: dict | None = None, **limits) -> JobSpec:
        path = self.domain.csv if fmt == "csv" else self.domain.parquet
        lim = {"cpu_seconds": 10, "wall_seconds": 10, **limits}
        return JobSpec(job_id="t", code=code, entry=entry, args=args or {}, data_path=str(path), data_format=fmt,
                       inputs=inputs, probe_fraction=probe, limits=Limits(**lim))

    def __call__(self, code: str, **kw) -> JobOutcome:
        return self.sb.run(self.spec(code, **kw))


def process_table() -> dict[int, tuple[int, int, str]]:
    """pid → (ppid, session id, state) for every process on the host."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), int(fields[3]), fields[0])
    return table


def descendants(pid: int) -> set[int]:
    table = process_table()
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, (ppid, _, _) in table.items() if ppid in frontier} - out
        out |= frontier
    return out
