"""Memory of a custom-code job that declares its columns: one JSON line per measure.

A sandboxed function job (the domain's real sandbox: zygote, lockdown, the "function" harness)
reads 1 of 10 columns, then all 10, of a Parquet file of ``--rows`` rows; its peak RSS (the
kernel's ``ru_maxrss`` of the job process, which includes the warm pandas it forked from) is
compared, in the same run, with plain pandas in a fresh interpreter: ``pd.read_parquet(columns=)``,
and the way the harness loaded a dataset before columns could be declared (the whole file read
into memory, then parsed). ``baseline`` lines are the same processes reading a 10-row file, so
the difference is what the data costs.

    PYTHONPATH=. python benchmarks/custom_columns.py [--rows 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fednb.domain.run.sandbox import JobSpec, Limits, Sandbox

COLUMNS = [f"x{i}" for i in range(9)] + ["site"]
WALL_MS: dict[tuple[str, str], float] = {}  # (file, columns) -> median wall time of the sandbox job
JOB = "def f(df):\n    return len(df.columns)\n"
PLAIN = '''
import json, sys
import pandas as pd, pyarrow.parquet as pq, pyarrow as pa
how, path, columns = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
def high_water_mb():  # VmHWM: this process's own peak (ru_maxrss would carry the forking parent's over exec)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
before = high_water_mb()
if how == "pandas_read_parquet":
    df = pd.read_parquet(path, columns=columns)
else:  # the harness before declared columns: the whole file into memory, then every column parsed
    with open(path, "rb") as f:
        data = f.read()
    df = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False).to_pandas(use_threads=False)
    df = df[columns] if columns else df
print(json.dumps({"before_mb": before, "peak_mb": high_water_mb(), "columns": len(df.columns)}))
'''


def write_data(folder: Path, rows: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({c: rng.normal(size=rows) for c in COLUMNS[:-1]})
    frame["site"] = rng.choice([f"site-{i:02d}" for i in range(20)], rows)
    big, tiny = folder / "big.parquet", folder / "tiny.parquet"
    frame.to_parquet(big, index=False)
    frame.head(10).to_parquet(tiny, index=False)
    return big, tiny


def sandbox_peaks(sb: Sandbox, path: Path, columns: list[str] | None, runs: int) -> list[float]:
    spec = JobSpec(job_id="bench", code=JOB, entry="f", args={}, data_path=str(path), data_format="parquet",
                   probe_fraction=None, limits=Limits(memory_mb=4096, wall_seconds=300, cpu_seconds=300),
                   columns=columns)
    peaks, walls = [], []
    for _ in range(runs):
        out = sb.run(spec)
        if out.status != "ok" or out.value != len(columns or COLUMNS):
            raise SystemExit(f"the job did not run as expected: {out.status} {out.message} {out.value}")
        peaks.append(out.max_rss_mb)
        walls.append(out.wall_ms)
    WALL_MS[(str(path), str(columns))] = statistics.median(walls)
    return peaks


def plain_peaks(how: str, path: Path, columns: list[str] | None, runs: int) -> list[float]:
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    peaks = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-I", "-c", PLAIN, how, str(path), json.dumps(columns)],
                             capture_output=True, text=True, env=env, check=True)
        peaks.append(json.loads(out.stdout)["peak_mb"])
    return peaks


def line(reader: str, read: str, peaks: list[float], baseline: float, rows: int) -> dict:
    peak = statistics.median(peaks)
    return {"measure": "peak_rss", "reader": reader, "columns_read": read, "rows": rows, "unit": "MB",
            "peak_rss_mb": round(peak, 1), "above_baseline_mb": round(peak - baseline, 1), "runs": len(peaks)}


def ratio(a: float, b: float) -> float | None:
    """a / b, or None where b is under a megabyte (too small a size to compare)."""
    return round(a / b, 3) if b >= 1 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory(prefix="fednb-bench-") as tmp:
        datasets = Path(tmp) / "datasets"
        datasets.mkdir()
        big, tiny = write_data(datasets, args.rows)
        lines.append({"measure": "file", "rows": args.rows, "columns": len(COLUMNS),
                      "parquet_mb": round(big.stat().st_size / 2**20, 1)})
        one, every = ["x0"], None
        with Sandbox(datasets) as sb:
            base = statistics.median(sandbox_peaks(sb, tiny, every, args.runs))
            lines.append(line("fednb_sandbox_job", "baseline (10 rows)", [base], base, 10))
            lines.append(line("fednb_sandbox_job", "1 of 10", sandbox_peaks(sb, big, one, args.runs), base, args.rows))
            lines.append(line("fednb_sandbox_job", "10 of 10", sandbox_peaks(sb, big, every, args.runs), base,
                              args.rows))
            lines.append(line("fednb_sandbox_job", "10 of 10 declared", sandbox_peaks(sb, big, COLUMNS, args.runs),
                              base, args.rows))
            sandbox_peaks(sb, tiny, one, args.runs)
        lines += [{"measure": "job_wall_ms", "file": Path(f).stem, "columns": c, "median_ms": round(ms, 1),
                   "note": "declared columns are read by a forked reader (see harness_data)"}
                  for (f, c), ms in WALL_MS.items()]
        for how in ("pandas_read_parquet", "whole_file_then_parse"):
            base = statistics.median(plain_peaks(how, tiny, every, args.runs))
            lines.append(line(how, "baseline (10 rows)", [base], base, 10))
            if how == "pandas_read_parquet":
                lines.append(line(how, "1 of 10", plain_peaks(how, big, one, args.runs), base, args.rows))
            lines.append(line(how, "10 of 10", plain_peaks(how, big, every, args.runs), base, args.rows))
    by = {(d.get("reader"), d.get("columns_read")): d.get("above_baseline_mb") for d in lines}
    job = {read: by[("fednb_sandbox_job", read)] for read in ("1 of 10", "10 of 10")}
    lines.append({"measure": "summary", "note": "ratios of memory above each reader's baseline",
                  "job_1_of_10_vs_10_of_10": ratio(job["1 of 10"], job["10 of 10"]),
                  "job_vs_pandas_1_of_10": ratio(job["1 of 10"], by[("pandas_read_parquet", "1 of 10")]),
                  "job_vs_pandas_10_of_10": ratio(job["10 of 10"], by[("pandas_read_parquet", "10 of 10")]),
                  "job_10_of_10_vs_whole_file_before": ratio(job["10 of 10"], by[("whole_file_then_parse", "10 of 10")])})
    lines.append({"measure": "machine", "cpus": os.cpu_count(), "python": sys.version.split()[0]})
    for item in lines:
        print(json.dumps(item), flush=True)


if __name__ == "__main__":
    main()
