"""Cox regression over one domain as its table grows: fednb through the real HTTP API vs lifelines.

For each size the script writes a Parquet table (five covariates uniform on [-1, 1], durations in
whole days from a proportional-hazards model with coefficients 0.7 and -0.5 on x1 and x4, uniform
censoring), registers it in a new domain, serves it and fits ``days + died ~ x1 + ... + x5`` with
``fednb.coxph``: on a grid of 30 points (binned times) and with ``strata="domain"`` (exact times,
Efron's ties: the estimator lifelines fits). Each fit reports its wall and CPU seconds (the domain's
server and workers summed, plus the analyst's process) and the peak RSS of the domain's processes
(summed, polled every 50 ms; the server's and its largest child's, a built-in worker, apart). Then lifelines' ``CoxPHFitter``
fits the same table in a fresh process (wall, CPU, peak RSS), and the summary line gives the
largest relative difference of the stratified fit's coefficients from lifelines'. JSON lines.

    python benchmarks/cox_scaling.py --rows 100000 --rows 1000000 [--tmp /tmp] [--lifelines-max 2000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

COVARIATES = ["x1", "x2", "x3", "x4", "x5"]
FORMULA = "days + died ~ " + " + ".join(COVARIATES)


def write_table(path: Path, rows: int) -> None:
    import duckdb

    con = duckdb.connect(config={"memory_limit": "1GB", "threads": 2})
    con.execute("SELECT setseed(0.17)")
    xs = ", ".join(f"random() * 2 - 1 AS {x}" for x in COVARIATES)
    con.execute(f"""COPY (
        SELECT {', '.join(COVARIATES)}, least(t, c) AS days, CAST(t <= c AS INTEGER) AS died FROM (
            SELECT *, ceil(-ln(1 - random()) * 300 / exp(0.7 * x1 - 0.5 * x4)) AS t, ceil(30 + random() * 870) AS c
            FROM (SELECT {xs} FROM range({rows})))) TO '{path}' (FORMAT parquet)""")
    con.close()


def new_domain(folder: Path, table: Path, token: str) -> None:
    from rows_scaling import unhurried_domain  # this folder

    unhurried_domain(folder, token, "cox-scaling")
    subprocess.run([sys.executable, "-m", "fednb", "domain", "add-dataset", str(folder), str(table), "--name", "t"],
                   check=True, capture_output=True)


def domain_fits(folder: Path, rows: int, token: str) -> dict[str, list[float]]:
    from rows_scaling import PeakRss, cpu_seconds  # this folder: the domain-process peak RSS and CPU

    import fednb
    from fednb.demo.local import serving

    params = {}
    with serving([folder]) as servers:
        pid = servers[0].pid
        with fednb.connect([servers[0].url], token=token) as fed:
            ds = fed.dataset("t")
            ds.count()  # the built-in workers started: their imports are not the fit's time
            for name, options in [("grid", {"time_grid": 30}), ("stratified", {"strata": "domain"})]:
                watch = PeakRss(pid)
                start, cpu, own = time.perf_counter(), cpu_seconds(pid), time.process_time()
                fit = fednb.coxph(FORMULA, data=ds, timeout=3600, **options)
                seconds = time.perf_counter() - start
                used = cpu_seconds(pid) - cpu + time.process_time() - own
                watch.stop()
                server = max((v for k, v in watch.largest.items() if k.split()[0] == str(pid)), default=0)
                children = [v for k, v in watch.largest.items() if k.split()[0] != str(pid)]
                params[name] = list(fit.params[COVARIATES])
                print(json.dumps({"benchmark": "cox_scaling", "rows": rows, "system": "fednb-domain", "fit": name,
                                  "seconds": round(seconds, 3), "cpu_seconds": round(used, 3),
                                  "iterations": fit.iterations, "converged": fit.converged, "nobs": fit.nobs,
                                  "domain_peak_rss_mb": watch.peak >> 20,
                                  "server_peak_rss_mb": server >> 20,
                                  "largest_child_peak_rss_mb": max(children) >> 20 if children else None,
                                  "params": [float(b) for b in params[name]]}), flush=True)
    return params


def lifelines_fit(path: str) -> None:
    """Runs in its own process: lifelines on the whole table in memory (Efron's ties, exact times)."""
    import pandas as pd
    from lifelines import CoxPHFitter

    start, cpu = time.perf_counter(), time.process_time()
    df = pd.read_parquet(path)
    fit = CoxPHFitter().fit(df, "days", "died")
    print(json.dumps({"system": "lifelines", "fit": "exact", "seconds": round(time.perf_counter() - start, 3),
                      "cpu_seconds": round(time.process_time() - cpu, 3),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10,
                      "params": [float(fit.params_[x]) for x in COVARIATES]}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, action="append", help="repeatable; default 100,000 and 1,000,000")
    parser.add_argument("--tmp", default=None, help="where the data is written (and deleted after)")
    parser.add_argument("--lifelines-max", type=int, default=2_000_000, help="skip lifelines above this many rows")
    parser.add_argument("--lifelines", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lifelines:
        lifelines_fit(args.lifelines)
        return
    from fednb.domain.domain import new_token

    token = new_token()
    for rows in args.rows or [100_000, 1_000_000]:
        root = Path(tempfile.mkdtemp(prefix="fednb-cox-", dir=args.tmp))
        try:
            table = root / "table.parquet"
            write_table(table, rows)
            new_domain(root / "domain", table, token)
            ours = domain_fits(root / "domain", rows, token)
            if rows > args.lifelines_max:
                continue
            out = subprocess.run([sys.executable, __file__, "--lifelines", str(table)], check=True,
                                 capture_output=True, text=True).stdout
            ref = json.loads(out.strip().splitlines()[-1])
            print(json.dumps({"benchmark": "cox_scaling", "rows": rows, **ref}), flush=True)
            # relative to the largest coefficient: x2, x3 and x5 are 0 in the model, so near 0 here
            diff = max(abs(a - b) for a, b in zip(ours["stratified"], ref["params"])) / max(map(abs, ref["params"]))
            print(json.dumps({"benchmark": "cox_scaling", "rows": rows, "summary": True,
                              "stratified_vs_lifelines_max_diff_rel_to_largest": float(f"{diff:.3g}")}), flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
