"""A class at once: many participants, each with their own token, doing the tour's statistics on a
teacher's three workshop domains at the same moment.

A teacher can rehearse with it before a class (``python benchmarks/workshop_load.py --students 30``
against ``fednb workshop serve``'s folder); the tests use it to show that 30 participants all get
their answers. Participants run as threads of one process or, closer to a class of separate kernels,
as processes (``python -m fednb.demo.classroom URL,... TOKEN`` each).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BINS = [15, 20, 25, 30, 35, 40]

# the tour's custom function; the teacher approves it once for the whole class (approve --same-code)
FUNCTION = '''\
def readmission_by_risk(df):
    """Readmission rate and group size by smoking and diabetes."""
    g = df.groupby(["smoker", "diabetes"])["readmitted"]
    return {"rate": g.mean(), "n": g.size()}
'''


def invite_class(folders: dict[str, Path], count: int, prefix: str = "student") -> dict[str, str]:
    """``count`` participants, each with one token that works on every domain: ``{name: token}``."""
    from fednb.domain import Domain

    names = {f"{prefix}{i:02d}": None for i in range(1, count + 1)}
    tokens: dict[str, str] | None = None
    for folder in folders.values():
        d = Domain(folder)
        try:
            tokens = d.invite_many(tokens or names)
        finally:
            d.close()
    return tokens or {}


def preapprove(urls: list[str], tokens: dict[str, str], folders: dict[str, Path], timeout: float = 120) -> None:
    """Every participant sends the function once and the teacher approves it once per hospital, for
    all of them (as in class: one review of the exercise's code, ``approve --same-code``)."""
    import fednb
    from fednb.domain import Domain

    def submit(token: str):
        with fednb.connect(urls, token=token) as fed:
            return fed.dataset("patients").submit(fednb.function(FUNCTION))

    with ThreadPoolExecutor(8) as pool:
        requests = list(pool.map(submit, tokens.values()))
    for part in requests[0].parts:
        if part.status == "pending":
            d = Domain(folders[part.domain])
            try:
                d.approve_same_code(part.id, "the workshop's exercise")
            finally:
                d.close()
    with fednb.connect(urls, token=next(iter(tokens.values()))) as fed:
        fed.dataset("patients").submit(fednb.function(FUNCTION)).wait(timeout).result(min_domains=2)


def participant(urls: list[str], token: str, start: Callable[[], None]) -> dict:
    """Connect (before the start, as students sit with their notebook open), then, from ``start()``
    on, the tour's statistics; returns seconds per step, in all, and the answers."""
    import pandas as pd

    import fednb

    fed = fednb.connect(urls, token=token, min_domains=len(urls))
    patients, brine = fed.dataset("patients"), fed.dataset("brine_batches")
    start()
    steps: dict[str, float] = {}

    def step(name: str, work: Callable):
        t = time.perf_counter()
        value = work()
        steps[name] = time.perf_counter() - t
        return value

    began = time.perf_counter()
    answers = {
        "count": step("count", lambda: patients.count().value),
        "mean": step("mean", lambda: patients.mean("age").value),
        "histogram": step("histogram", lambda: [None if pd.isna(c) else int(c)  # suppressed cells are NA
                                                for c in patients.histogram("bmi", BINS).value["count"]]),
        "crosstab": step("crosstab", lambda: patients.crosstab("smoker", "readmitted").value.to_numpy().tolist()),
        "function": step("function", lambda: {d: int(v["n"].sum()) for d, v in patients.submit(
            fednb.function(FUNCTION)).wait(600).result(min_domains=2).items()}),
        "yield": step("yield", lambda: brine.mean("recovery_yield").value),
    }
    seconds = time.perf_counter() - began
    fed.close()
    return {"seconds": seconds, "steps": steps, "answers": answers}


def run_class(urls: list[str], tokens: dict[str, str], *, processes: bool = False) -> tuple[float, list[dict]]:
    """Every participant at once; returns (seconds until the last one had all answers, their reports)."""
    return (_processes if processes else _threads)(urls, list(tokens.values()))


def _threads(urls: list[str], tokens: list[str]) -> tuple[float, list[dict]]:
    gate = threading.Barrier(len(tokens) + 1)
    with ThreadPoolExecutor(len(tokens)) as pool:
        futures = [pool.submit(participant, urls, t, gate.wait) for t in tokens]
        gate.wait(timeout=900)  # every participant connected first; a loaded machine is slow to get there
        began = time.perf_counter()
        reports = [f.result() for f in futures]
    return time.perf_counter() - began, reports


def _processes(urls: list[str], tokens: list[str]) -> tuple[float, list[dict]]:
    procs = [subprocess.Popen([sys.executable, "-m", "fednb.demo.classroom", ",".join(urls), t],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for t in tokens]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a participant could not connect (exit {p.wait()})")
        began = time.perf_counter()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = [json.loads(p.stdout.readline()) for p in procs]
        return time.perf_counter() - began, reports
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(30)


def percentiles(values: list[float], points=(50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles (no interpolation between participants), and the maximum."""
    ordered = sorted(values)
    out = {f"p{p}": ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] for p in points}
    out["max"] = ordered[-1]
    return out


def _main(argv: list[str]) -> None:
    urls, token = argv[0].split(","), argv[1]

    def start() -> None:
        print("ready", flush=True)
        sys.stdin.readline()

    print(json.dumps(participant(urls, token, start)), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
