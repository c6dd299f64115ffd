"""Job start latency of the sandbox: one JSON line per measure.

start = the domain sends the job → the analyst's function is called (fork, lockdown, data load);
end_to_end = → the parsed JobOutcome, child reaped. Compared with a cold ``python -I -c`` per job,
and, in the same run, across configurations: "strong" (namespaces), "standard" (none), and
"strong+cgroup" (each job joins a shared cgroup first; only where a cgroup v2 hierarchy is
writable). Runs against an older checkout too (``PYTHONPATH=OLD``) for before/after numbers.

    PYTHONPATH=. python benchmarks/sandbox_start.py [--jobs 50] [--cold 10]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fednb.domain.run.sandbox import JobSpec, Limits, Sandbox

TRIVIAL = "def f(df):\n    return 1\n"
GROUPBY = "def f(df):\n    return df.groupby('g')['x'].mean()\n"
COLD = '''
import sys, time, json
import pandas as pd
df = pd.read_csv(sys.argv[1])
t_called = time.monotonic()
value = df.groupby("g")["x"].mean().to_dict()
print(json.dumps({"t_called": t_called, "value": value}))
'''


def summary(name: str, job: str, values: list[float], **extra) -> dict:
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return {"measure": name, "job": job, "n": len(values), "unit": "ms", "min": round(values[0], 2),
            "median": round(statistics.median(values), 2), "p95": round(p95, 2), **extra}


def make_domain(root: Path) -> tuple[Path, Path, Path]:
    datasets = root / "datasets"
    datasets.mkdir()
    rng = np.random.default_rng(0)
    n = 5000
    pd.DataFrame({"g": rng.choice(list("abcdefgh"), n), "x": rng.normal(size=n), "y": rng.integers(0, 99, n),
                  "z": rng.random(n)}).to_csv(datasets / "groupby.csv", index=False)
    pd.DataFrame({"g": ["a", "b", "a"], "x": [1.0, 2.0, 3.0]}).to_csv(datasets / "tiny.csv", index=False)
    return datasets, datasets / "tiny.csv", datasets / "groupby.csv"


def configurations() -> list[tuple[str, dict]]:
    """(name, Sandbox keyword arguments) this checkout and host support."""
    params = inspect.signature(Sandbox).parameters
    configs = [("strong", {})]
    if "namespaces" in params:
        configs.append(("standard", {"namespaces": False}))
    if "cgroup" in params:
        from fednb.domain.run.sandbox import cgroup

        base = cgroup.locate()
        if base and os.access(base, os.W_OK):
            made = cgroup.create(8192, float(os.cpu_count() or 1))
            if not made.limits:  # no controllers here: placement alone still shows the join's cost
                path = os.path.join(base, f"fednb-bench-{secrets.token_hex(3)}")
                os.mkdir(path)
                made = cgroup.JobsCgroup(path, False, "placement only")
            configs.append(("strong+cgroup", {"cgroup": made}))
    return configs


def bench_sandbox(datasets: Path, tiny: Path, big: Path, jobs: int, config: str = "strong",
                  sandbox_args: dict | None = None, session: bool = True) -> list[dict]:
    lines = []
    t0 = time.monotonic()
    sb = Sandbox(datasets, **(sandbox_args or {}))
    iso = sb.start()
    lines.append({"measure": "sandbox_start", "unit": "ms", "value": round((time.monotonic() - t0) * 1000, 1),
                  "level": iso["level"], "config": config, "cgroup": iso.get("cgroup"),
                  "note": "zygote exec + imports + warm-up + self-test probe"})
    try:
        for job, code, path in (("trivial_3_rows", TRIVIAL, tiny), ("groupby_5000_rows_csv", GROUPBY, big)):
            spec = JobSpec(job_id="bench", code=code, entry="f", args={}, data_path=str(path), data_format="csv",
                           probe_fraction=None, limits=Limits())
            for _ in range(3):  # first jobs pay lazy page faults; not what a busy domain sees
                sb.run(spec)
            outs = [sb.run(spec) for _ in range(jobs)]
            bad = [o for o in outs if o.status != "ok"]
            if bad:
                raise SystemExit(f"{job}: {bad[0].status}: {bad[0].message}")
            lines.append(summary("job_start", job, [o.start_ms for o in outs], layers=iso["level"], config=config))
            lines.append(summary("job_end_to_end", job, [o.wall_ms for o in outs], layers=iso["level"],
                                 config=config))
        if not session:
            return lines
        spec = JobSpec(job_id="bench", code=GROUPBY, entry="f", args={}, data_path=str(big), data_format="csv",
                       probe_fraction=None, limits=Limits())
        with sb.session(spec) as session:
            rounds = [session.call({}) for _ in range(jobs)]
        lines.append(summary("session_round_end_to_end", "groupby_5000_rows_csv", [o.wall_ms for o in rounds]))
    finally:
        sb.close()
    return lines


def bench_cold(big: Path, runs: int) -> list[dict]:
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "JE_ARROW_MALLOC_CONF": "background_thread:false"}
    starts, ends = [], []
    for _ in range(runs):
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-I", "-c", COLD, str(big)], capture_output=True, env=env, check=True)
        result = json.loads(out.stdout)
        ends.append((time.monotonic() - t0) * 1000)
        starts.append((result["t_called"] - t0) * 1000)
    return [summary("job_start", "cold_python_groupby_5000_rows_csv", starts, layers="none (baseline)"),
            summary("job_end_to_end", "cold_python_groupby_5000_rows_csv", ends, layers="none (baseline)")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--cold", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fednb-bench-") as tmp:
        datasets, tiny, big = make_domain(Path(tmp))
        lines = []
        for i, (config, sandbox_args) in enumerate(configurations()):
            lines += bench_sandbox(datasets, tiny, big, args.jobs, config, sandbox_args, session=i == 0)
        lines += bench_cold(big, args.cold)
    lines.append({"measure": "machine", "cpus": os.cpu_count(), "python": sys.version.split()[0]})
    for line in lines:
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
