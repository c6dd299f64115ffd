"""One domain as its dataset grows: CSV -> add-dataset -> count, mean, crosstab, GLM (5 covariates).

For each size (rows x 10 columns) the script writes a CSV under a temporary folder, registers it
with ``fednb domain add-dataset`` (timed, peak RSS of that process), serves the domain and asks for
each built-in through the real HTTP API (timed; the peak RSS of the server and all its worker
processes, summed, polled every 50 ms; also their summed PSS, which counts the pages the forked
workers share once), then does the same with plain DuckDB on the domain's
Parquet file and with pandas on the CSV, each in a fresh process (its own peak RSS). Each answer
also has its CPU seconds (the domain's server and workers summed; the plain process's own): on a
shared machine wall time counts waiting for a core, CPU time only the work. Targets
(issue 13): the domain's peak RSS under the policy's engine memory limit (1 GB) at 50M rows, and
each built-in within 2x of plain DuckDB. Prints JSON lines; deletes its data on the way out.

    python benchmarks/rows_scaling.py --rows 1000000 --rows 10000000 [--pandas-max 10000000] [--tmp /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

COVARIATES = ["x1", "x2", "x3", "x4", "x5"]
FORMULA = "y ~ " + " + ".join(COVARIATES)
KEEP_ALL = "k >= -1"  # a filter every row passes: the same work for every system


def write_csv(path: Path, rows: int) -> None:
    """10 columns: an id, five covariates, an outcome, two categories and a small integer."""
    import duckdb

    con = duckdb.connect(config={"memory_limit": "1GB", "threads": 2})
    con.execute("SELECT setseed(0.42)")
    xs = ", ".join(f"random() * 2 - 1 AS {x}" for x in COVARIATES)
    con.execute(f"""COPY (
        SELECT id, {', '.join(COVARIATES)}, 1 + x1 - 0.5 * x2 + 0.25 * x3 + 2 * x4 - x5 + (random() - 0.5) AS y,
               ['a', 'b', 'c', 'd'][1 + (id % 4)::INTEGER] AS g, ['u', 'v', 'w'][1 + (id % 7 % 3)::INTEGER] AS h,
               (id % 10)::INTEGER AS k
        FROM (SELECT range AS id, {xs} FROM range({rows}))) TO '{path}' (HEADER, DELIMITER ',')""")
    con.close()


def _pss(pid: int) -> int:
    """Proportional set size in bytes: shared pages (the forked workers share the template's imports
    copy-on-write) divided among the processes that share them, so a sum over processes counts each
    page once. From ``smaps_rollup`` (Linux 4.14+); 0 where it cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) << 10
    except OSError:
        pass
    return 0


class PeakRss:
    """Polls a process and its descendants (a domain's server, its built-in workers, their template
    and the sandbox helper) until stopped: the peak of their summed RSS (each shared page counted in
    every process that maps it: an upper bound) and of their summed PSS (each page counted once)."""

    def __init__(self, pid: int, every: float = 0.05):
        import psutil

        self.root, self.every, self.peak, self.peak_pss, self.largest = psutil.Process(pid), every, 0, 0, {}
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                total = pss = 0
                for p in procs:
                    try:
                        rss = p.memory_info().rss
                        total += rss
                        pss += _pss(p.pid)
                        name = f"{p.pid} " + " ".join(p.cmdline()[1:4])[-50:]
                        self.largest[name] = max(self.largest.get(name, 0), rss)
                    except psutil.Error:
                        pass
                self.peak, self.peak_pss = max(self.peak, total), max(self.peak_pss, pss)
                self.processes = max(self.processes, len(procs))
            except psutil.Error:
                pass
            self._stop.wait(self.every)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by a process and its living descendants: on a shared
    machine the stable measure of work (wall time also counts waiting for a core)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def timed_process(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """(seconds, peak RSS of the process tree in bytes, stdout) of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watch = PeakRss(proc.pid)
    out, err = proc.communicate()
    peak = watch.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed: {err[-2000:]}")
    return time.perf_counter() - start, peak, out


class Lines(list):
    """The measurements of one size, each printed as it is made (a long run shows its progress)."""

    def __init__(self, rows: int):
        super().__init__()
        self.rows = rows

    def append(self, line: dict) -> None:
        super().append(line)
        print(json.dumps({"benchmark": "rows_scaling", "rows": self.rows, **line}), flush=True)


def prepared_copy(prepared: Path, root: Path, token: str) -> None:
    """A working copy of a domain prepared earlier (its Parquet hard-linked, read only; its store and
    policy copied), so a 50M-row table is written and registered once for many runs."""
    from fednb.domain import Domain

    folder = root / "domain"
    shutil.copytree(prepared, folder, ignore=shutil.ignore_patterns("datasets"))
    shutil.copytree(prepared / "datasets", folder / "datasets", copy_function=os.link)
    d = Domain(folder)
    d.invite(f"ana-{token[:6]}", token=token)
    d.close()


def unhurried_domain(folder: Path, token: str, name: str = "scaling") -> None:
    """A new domain whose built-ins may run an hour (a benchmark measures them; it does not stop them),
    with the analyst ``ana`` invited under ``token``."""
    from fednb.domain import Domain

    d = Domain.init(folder, name)
    policy = folder / "policy.toml"
    text = policy.read_text()
    for old, new in {"builtin_cpu_seconds = 15": "builtin_cpu_seconds = 3600",
                     "builtin_wall_seconds = 20": "builtin_wall_seconds = 3600"}.items():
        text = text.replace(old, new)
    policy.write_text(text)
    d.invite("ana", token=token)
    d.close()


def register(folder: Path, csv: Path, token: str, out: Lines) -> None:
    """A new domain with the CSV added as dataset ``t`` (the add-dataset time and peak RSS measured)."""
    unhurried_domain(folder, token)
    seconds, peak, _ = timed_process([sys.executable, "-m", "fednb", "domain", "add-dataset", str(folder), str(csv),
                                      "--name", "t"])
    out.append({"system": "fednb-domain", "measure": "add_dataset", "seconds": round(seconds, 3),
                "peak_rss_mb": peak >> 20})


def domain_run(root: Path, csv: Path | None, rows: int, token: str, runs: int, skip_glm: bool, out: Lines) -> None:
    import fednb
    from fednb.demo.local import serving

    folder = root / "domain"
    if csv is not None:
        register(folder, csv, token, out)
    with serving([folder]) as servers:
        watch = PeakRss(servers[0].pid)
        with fednb.connect([servers[0].url], token=token) as fed:
            ds = fed.dataset("t")
            asks = {"count": lambda w: ds.count(where=w), "mean": lambda w: ds.mean("x1", where=w),
                    "crosstab": lambda w: ds.crosstab("g", "h", where=w)}
            if not skip_glm:
                asks["glm"] = lambda w: fednb.glm(FORMULA, ds, where=w, timeout=3600)
            for i in range(2):  # start both built-in workers (their imports are not a built-in's time)
                ds.count(where=f"k >= {-100 - i}")
            for name, ask in asks.items():
                times, cpus, error = [], [], None
                for i in range(runs):
                    start, cpu = time.perf_counter(), cpu_seconds(servers[0].pid)
                    try:
                        ask(f"k >= {-1 - i}")  # a new request each run, over every row
                    except Exception as exc:  # a limit that stopped it is a result too
                        error = str(exc).splitlines()[-1][:300]
                        break
                    times.append(time.perf_counter() - start)
                    cpus.append(cpu_seconds(servers[0].pid) - cpu)
                # the fastest run, and the first: a crosstab's first run over a pair of columns also reads
                # each level's rows, which the worker keeps for the next ones
                out.append({"system": "fednb-domain", "measure": name, "seconds": round(min(times), 3) if times else None,
                            "first_seconds": round(times[0], 3) if times else None,
                            "cpu_seconds": round(min(cpus), 3) if cpus else None, **({"error": error} if error else {})})
        peak = watch.stop()
    out.append({"system": "fednb-domain", "measure": "serving", "peak_rss_mb": peak >> 20,
                "peak_pss_mb": watch.peak_pss >> 20, "processes": watch.processes,
                "peak_rss_mb_by_process": {k: v >> 20 for k, v in watch.largest.items()}})


def baseline(system: str, path: str, skip_glm: bool) -> None:
    """Runs in its own process: the same four answers with plain DuckDB or pandas, one JSON line each."""
    import numpy as np

    cpu = [0.0]

    def emit(measure: str, start: float) -> None:
        print(json.dumps({"system": system, "measure": measure, "seconds": round(time.perf_counter() - start, 3),
                          "cpu_seconds": round(time.process_time() - cpu[0], 3)}), flush=True)

    if system == "duckdb":
        import duckdb

        con = duckdb.connect(config={"memory_limit": "1GB", "threads": 2})
        src = f"read_parquet('{path}')"
        for measure, sql in [("count", f"SELECT count(*) FROM {src} WHERE {KEEP_ALL}"),
                             ("mean", f"SELECT avg(x1) FROM {src} WHERE {KEEP_ALL} AND x1 IS NOT NULL"),
                             ("crosstab", f"SELECT g, h, count(*) FROM {src} WHERE {KEEP_ALL} GROUP BY g, h")]:
            start, cpu[0] = time.perf_counter(), time.process_time()
            con.execute(sql).fetchall()
            emit(measure, start)
        if not skip_glm:
            terms = ["1", *COVARIATES]
            sums = [f"sum({a} * {b})" for i, a in enumerate(terms) for b in terms[i:]] + [f"sum({a} * y)" for a in terms]
            start, cpu[0] = time.perf_counter(), time.process_time()
            con.execute(f"SELECT {', '.join(sums)} FROM {src} WHERE {KEEP_ALL}").fetchall()
            emit("glm", start)
    else:
        import pandas as pd

        start, cpu[0] = time.perf_counter(), time.process_time()
        df = pd.read_csv(path)
        emit("load", start)
        for measure, fn in [("count", lambda s: len(s)), ("mean", lambda s: s["x1"].mean()),
                            ("crosstab", lambda s: pd.crosstab(s["g"], s["h"]))]:
            start, cpu[0] = time.perf_counter(), time.process_time()
            fn(df[df["k"] >= -1])
            emit(measure, start)
        if not skip_glm:
            start, cpu[0] = time.perf_counter(), time.process_time()
            rows = df[df["k"] >= -1]
            X = np.column_stack([np.ones(len(rows)), rows[COVARIATES].to_numpy()])
            np.linalg.solve(X.T @ X, X.T @ rows["y"].to_numpy())
            emit("glm", start)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"system": system, "measure": "process", "peak_rss_mb": peak_kb >> 10}), flush=True)


def parquet_rows(prepared: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(prepared / "datasets" / "t" / "data.parquet").metadata.num_rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, action="append", help="repeatable; default 1,000,000")
    parser.add_argument("--runs", type=int, default=3, help="timed requests per built-in (the fastest is kept)")
    parser.add_argument("--pandas-max", type=int, default=10_000_000, help="skip pandas above this many rows")
    parser.add_argument("--skip-glm", action="store_true")
    parser.add_argument("--tmp", default=None, help="where the data is written (and deleted after)")
    parser.add_argument("--reuse", default=None, metavar="DOMAIN",
                        help="a domain folder with dataset t registered earlier (by this script's table): measured "
                             "on a copy, with no CSV written or added")
    parser.add_argument("--baseline", nargs=2, metavar=("SYSTEM", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        baseline(args.baseline[0], args.baseline[1], args.skip_glm)
        return
    from fednb.domain.domain import new_token

    token = new_token()
    sizes = [parquet_rows(Path(args.reuse))] if args.reuse else args.rows or [1_000_000]
    for rows in sizes:
        root = Path(tempfile.mkdtemp(prefix="fednb-rows-", dir=args.tmp))
        try:
            lines = Lines(rows)
            if args.reuse:
                csv = None
                prepared_copy(Path(args.reuse), root, token)
            else:
                csv = root / "table.csv"
                start = time.perf_counter()
                write_csv(csv, rows)
                lines.append({"system": "data", "measure": "write_csv", "seconds": round(time.perf_counter() - start, 3),
                              "csv_mb": csv.stat().st_size >> 20})
            domain_run(root, csv, rows, token, args.runs, args.skip_glm, lines)
            parquet = root / "domain" / "datasets" / "t" / "data.parquet"
            extra = ["--skip-glm"] if args.skip_glm else []
            systems = [("duckdb", parquet)] + ([("pandas", csv)] if csv and rows <= args.pandas_max else [])
            for system, path in systems:
                _, _, out = timed_process([sys.executable, __file__, "--baseline", system, str(path), *extra],
                                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
                for line in out.splitlines():
                    if line.strip():
                        lines.append(json.loads(line))
            def measured(system: str, key: str) -> dict:
                return {ln["measure"]: ln[key] for ln in lines if ln["system"] == system and ln.get(key)}

            plain, ours = measured("duckdb", "seconds"), measured("fednb-domain", "seconds")
            plain_cpu, ours_cpu = measured("duckdb", "cpu_seconds"), measured("fednb-domain", "cpu_seconds")
            serving = next(ln for ln in lines if ln["system"] == "fednb-domain" and ln["measure"] == "serving")
            print(json.dumps({"benchmark": "rows_scaling", "rows": rows, "summary": True,
                              "domain_serving_peak_rss_mb": serving["peak_rss_mb"],
                              "domain_serving_peak_pss_mb": serving["peak_pss_mb"],
                              "vs_plain_duckdb": {m: round(ours[m] / plain[m], 2) for m in ours if plain.get(m)},
                              "cpu_vs_plain_duckdb": {m: round(ours_cpu[m] / plain_cpu[m], 2) for m in ours_cpu
                                                      if plain_cpu.get(m)}}),
                  flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
