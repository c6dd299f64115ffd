"""Many domains on one machine, as a workshop or a consortium rehearsal runs them.

Starts N local domains (100 by default; each its own ``fednb domain serve`` with a small synthetic
hospital dataset), then prints one JSON line per measure:

- ``start``: seconds until every server listens (all launched at once);
- ``idle``: CPU used by all domains (every process of each domain's tree: server, sandbox, workers)
  over ``--idle-seconds``, read from ``/proc/PID/stat`` (utime + stime), in cores and per domain,
  and the proportional set size (``Pss`` in ``/proc/PID/smaps_rollup``) per domain, first before any
  request and again after the queries below (``phase``: fresh, after_use);
- ``mean`` and ``glm``: one pooled mean over all N domains (cold: the first request each domain
  serves; warm: the next one) and one logistic regression, wall-clock seconds, checked against the
  pooled data, with the CPU milliseconds per domain they cost the domains' processes and the
  analyst's (CPU does not depend on how busy the shared machine was; wall-clock time does), split
  into the servers' and their helpers' (worker template, built-in workers).

Run it before and after a change on the same machine: the comparison is between those two runs.

    python benchmarks/many_domains.py [--domains 100] [--idle-seconds 30] [--rows 200] [--classic]
                                      [--no-ready-worker]

``--classic`` starts each server as a fresh ``python -m fednb domain serve`` instead of forking it
from the shared launcher (:mod:`fednb.domain.launcher`): the same run, the old way.
``--no-ready-worker`` turns off the built-in worker each domain keeps ready with its datasets opened
(``[requests] builtin_worker_ready``): the cold mean then pays each domain's worker start.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children_by_parent() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(entry))
    return out


def tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def trees(servers) -> list[list[int]]:
    children = children_by_parent()
    return [tree(s.pid, children) for s in servers]


def idle(servers, seconds: float, phase: str) -> dict:
    """CPU over ``seconds`` of idleness and memory of every domain's processes, plus the launcher
    they were forked from (shared by all, so counted once and divided among them)."""
    from fednb.domain.process import launcher_pid

    shared = [launcher_pid()] if launcher_pid() else []
    before = trees(servers)
    ticks0 = {p: cpu_ticks(p) for t in [*before, shared] for p in t}
    time.sleep(seconds)
    after = trees(servers)
    used = sum(cpu_ticks(p) - ticks0.get(p, 0) for t in [*after, shared] for p in t) / CLOCK_TICKS
    pss = [sum(pss_kb(p) for p in t) / 1024 for t in after]
    shared_mb = sum(pss_kb(p) for p in shared) / 1024
    total = float(np.sum(pss)) + shared_mb
    return {"benchmark": "many_domains", "measure": "idle", "phase": phase, "domains": len(servers),
            "launcher": bool(shared), "seconds": seconds, "cpu_cores": round(used / seconds, 4),
            "cpu_seconds_per_domain": round(used / len(servers), 4),
            "processes_per_domain": round((sum(map(len, after)) + len(shared)) / len(servers), 2),
            "pss_mb_per_domain": round(total / len(servers), 1), "pss_mb_max_one_domain": round(float(np.max(pss)), 1),
            "pss_mb_launcher": round(shared_mb, 1), "pss_mb_total": round(total, 1)}


def emit(line: dict) -> None:
    """One JSON line, with the machine's load average (the runs share a machine: say how busy it was)."""
    print(json.dumps({**line, "load_1min": round(os.getloadavg()[0], 1)}), flush=True)


def domains_cpu_seconds(servers) -> tuple[float, float]:
    """CPU used so far by every process of every domain: (the servers, their helpers: worker template,
    built-in workers, sandbox)."""
    found = trees(servers)
    served = sum(cpu_ticks(t[0]) for t in found)
    return served / CLOCK_TICKS, (sum(cpu_ticks(p) for t in found for p in t) - served) / CLOCK_TICKS


def client_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def cost(servers, began: tuple[float, float], n: int) -> dict:
    """CPU milliseconds per domain that a call cost the domains and the analyst's process: unlike its
    wall-clock time, this does not depend on how busy the shared machine was."""
    server, helpers = domains_cpu_seconds(servers)
    return {"domains_cpu_ms_per_domain": round(1000 * (server + helpers - sum(began[0])) / n, 1),
            "server_cpu_ms_per_domain": round(1000 * (server - began[0][0]) / n, 1),
            "workers_cpu_ms_per_domain": round(1000 * (helpers - began[0][1]) / n, 1),
            "client_cpu_ms_per_domain": round(1000 * (client_cpu_seconds() - began[1]) / n, 1)}


def queries(urls: list[str], token: str, truth: pd.DataFrame, servers=()) -> list[dict]:
    import fednb

    def now() -> tuple[tuple[float, float], float]:
        return domains_cpu_seconds(servers), client_cpu_seconds()

    out = []
    began = time.perf_counter()
    fed = fednb.connect(urls, token=token, timeout=60)
    out.append({"benchmark": "many_domains", "measure": "connect", "domains": len(urls),
                "seconds": round(time.perf_counter() - began, 3)})
    patients = fed.dataset("patients")
    for run in ("cold", "warm"):
        spent, began = now(), time.perf_counter()
        mean = patients.mean("age", timeout=120)
        seconds = time.perf_counter() - began
        out.append({"benchmark": "many_domains", "measure": "mean", "run": run, "domains": len(urls),
                    "seconds": round(seconds, 3), "exact": bool(np.isclose(mean.value, truth.age.mean(), rtol=1e-12)),
                    **cost(servers, spent, len(urls))})
    spent, began = now(), time.perf_counter()
    fit = fednb.glm("readmitted ~ age + bmi + smoker", data=patients, family="binomial", timeout=120)
    seconds = time.perf_counter() - began
    glm_cost = cost(servers, spent, len(urls))
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    ref = smf.glm("readmitted ~ age + bmi + smoker", data=truth.assign(smoker=truth.smoker.astype(int)),
                  family=sm.families.Binomial()).fit()
    out.append({"benchmark": "many_domains", "measure": "glm", "domains": len(urls), "seconds": round(seconds, 3),
                "iterations": fit.iterations,
                "matches_pooled_fit": bool(np.allclose(fit.params.to_numpy(), ref.params.to_numpy(), rtol=1e-6)),
                **glm_cost})
    fed.close()
    return out


def build(root: Path, n: int, rows: int, token: str, policy_edits: dict | None = None) -> tuple[list[Path], pd.DataFrame]:
    from fednb.demo import data
    from fednb.demo.local import create_domain

    folders, frames = [], []
    for i in range(n):
        frame = data.patients(rows, age=(50 + i % 15, 14), bmi=(27.0, 4.5), smoker=0.25, male=0.5, seed=100 + i)
        create_domain(root, f"site-{i:03d}", frame, "patients", token=token, policy_edits=policy_edits).close()
        folders.append(root / f"site-{i:03d}")
        frames.append(frame)
    return folders, pd.concat(frames, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--domains", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--settle-seconds", type=float, default=10, help="after start, before measuring idleness")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--classic", action="store_true", help="each server a fresh `python -m fednb` (no launcher)")
    parser.add_argument("--no-ready-worker", action="store_true",
                        help="policy builtin_worker_ready = false: no built-in worker until the first statistic")
    args = parser.parse_args()
    from fednb.domain.domain import new_token
    from fednb.domain.process import DomainProcess

    with tempfile.TemporaryDirectory(prefix="fednb-many-") as tmp:
        os.environ["FEDNB_HOME"] = str(Path(tmp) / "home")
        token = new_token()
        began = time.perf_counter()
        edits = {"builtin_worker_ready = true": "builtin_worker_ready = false"} if args.no_ready_worker else None
        folders, truth = build(Path(tmp), args.domains, args.rows, token, edits)
        emit({"benchmark": "many_domains", "measure": "create", "domains": args.domains,
              "seconds": round(time.perf_counter() - began, 3)})
        began = time.perf_counter()
        servers = [DomainProcess(f, lean=not args.classic) for f in folders]
        for s in servers:
            s.launch()
        for s in servers:
            s.wait_ready(600)
        try:
            emit({"benchmark": "many_domains", "measure": "start", "domains": args.domains,
                  "launcher": not args.classic, "ready_worker": not args.no_ready_worker,
                  "seconds": round(time.perf_counter() - began, 3),
                  "cores": os.cpu_count()})
            time.sleep(args.settle_seconds)
            emit(idle(servers, args.idle_seconds, "fresh"))
            for line in queries([s.url for s in servers], token, truth, servers):
                emit(line)
            time.sleep(args.settle_seconds)
            emit(idle(servers, args.idle_seconds, "after_use"))
        finally:
            for s in servers:
                s.stop()


if __name__ == "__main__":
    main()
