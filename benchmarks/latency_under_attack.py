"""Another analyst's ``ds.count()`` latency at rest and while one analyst attacks the same domain.

One real domain server on 127.0.0.1 with a 200,000-row dataset. The attacker sends pathological but
valid requests, through the API as any analyst can: GLM rounds whose 93-term design is hundreds of
MB (``y ~ (a+...+h)**3``), a GLM whose two 240-level factors make a 57,600-column design, and 60
long-polls parked on a request that never ends. The victim's count is timed at rest, then during
the attack. Prints one JSON line per phase (median and p95 seconds).

    python benchmarks/latency_under_attack.py [--runs 20] [--rows 200000] [--no-wide]

``--no-wide`` leaves out the 57,600-column design: a domain that builds designs before checking
their width (fednb before the worker processes) would try to allocate ~90 GB for it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fednb  # noqa: E402
from fednb.demo.local import create_domain, serving  # noqa: E402
from fednb.domain import Domain  # noqa: E402
from fednb.domain.domain import new_token  # noqa: E402

HEAVY = "y ~ (a + b + c + d + e + f + g + h)**3"


def _frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    df = pd.DataFrame({c: rng.normal(size=rows).round(3) for c in "abcdefgh"})
    df["y"] = rng.normal(size=rows).round(3)
    df["age"] = rng.integers(18, 90, size=rows)
    df["f1"] = rng.integers(0, 240, size=rows).astype(str)
    df["f2"] = rng.integers(0, 240, size=rows).astype(str)
    return df


def _summary(phase: str, times: list[float], **extra) -> dict:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"benchmark": "latency_under_attack", "phase": phase, "runs": len(times),
            "median_s": round(statistics.median(times), 4), "p95_s": round(p95, 4), "max_s": round(ordered[-1], 4),
            **extra}


def _counts(ds, runs: int, start: int) -> list[float]:
    times = []
    for i in range(runs):
        t = time.perf_counter()
        ds.count(where=f"age >= {18 + (start + i) % 60}", timeout=600)
        times.append(time.perf_counter() - t)
    return times


class Attack:
    """The attacker's threads: heavy GLM rounds, wide designs and parked long-polls, until stopped."""

    def __init__(self, url: str, token: str):
        self.url, self.headers = url, {"Authorization": f"Bearer {token}"}
        self.stop = threading.Event()
        self.sent = {"heavy_rounds": 0, "wide_designs": 0, "parked_polls": 0}
        self.threads: list[threading.Thread] = []

    def start(self, parked: int = 60, wide: bool = True) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=60) as c:
            never = c.post("/v1/requests", json={"dataset": "patients", "kind": "function", "name": "f",
                                                 "code": "def f(df):\n    return 1\n"}).json()["id"]
        self.threads = [threading.Thread(target=self._quietly, args=(self._heavy,), daemon=True)]
        if wide:
            self.threads.append(threading.Thread(target=self._quietly, args=(self._wide,), daemon=True))
        self.threads += [threading.Thread(target=self._quietly, args=(self._park, never), daemon=True)
                         for _ in range(parked)]
        for t in self.threads:
            t.start()
        time.sleep(2)  # let the first poison reach the domain

    def _quietly(self, fn, *args) -> None:
        try:
            fn(*args)
        except httpx.HTTPError:  # the server went away at the end of the run
            pass

    def _glm(self, c: httpx.Client, formula: str, **args) -> httpx.Response:
        return c.post("/v1/requests", json={"dataset": "patients", "kind": "builtin", "name": "glm",
                                            "args": {"formula": formula, "family": "gaussian", **args},
                                            "limits": {"max_rounds": 1}})

    def _heavy(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=600) as c:
            while not self.stop.is_set():
                r = self._glm(c, HEAVY)
                if r.status_code != 201:
                    return
                c.post(f"/v1/requests/{r.json()['id']}/rounds?wait=60", json={"round": 1, "inputs": {}})
                self.sent["heavy_rounds"] += 1

    def _wide(self) -> None:
        levels = {"f1": [str(i) for i in range(240)], "f2": [str(i) for i in range(240)]}
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=600) as c:
            while not self.stop.is_set():
                r = self._glm(c, "y ~ C(f1):C(f2)", levels=levels)
                if r.status_code == 201:
                    c.post(f"/v1/requests/{r.json()['id']}/rounds?wait=60", json={"round": 1, "inputs": {}})
                self.sent["wide_designs"] += 1
                self.stop.wait(0.5)

    def _park(self, request_id: str) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=600) as c:
            while not self.stop.is_set():
                c.get(f"/v1/requests/{request_id}", params={"wait": 60})
                self.sent["parked_polls"] += 1

    def end(self) -> None:
        self.stop.set()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--no-wide", action="store_true")
    args = parser.parse_args()
    alice, bob = new_token(), new_token()
    with tempfile.TemporaryDirectory(prefix="fednb-attack-") as tmp:
        d = create_domain(Path(tmp), "target", _frame(args.rows), "patients", token=alice, analyst="alice")
        d.invite("bob", token=bob)
        d.close()
        with serving([Path(tmp) / "target"]) as servers:
            url = servers[0].url
            fed = fednb.connect([url], token=bob)
            ds = fed.dataset("patients")
            _counts(ds, 5, 0)  # warm
            print(json.dumps(_summary("at_rest", _counts(ds, args.runs, 100))), flush=True)
            attack = Attack(url, alice)
            attack.start(wide=not args.no_wide)
            during = _counts(ds, args.runs, 200)
            attack.end()
            print(json.dumps(_summary("during_attack", during, attack=attack.sent)), flush=True)
            fed.close()
            check = Domain(Path(tmp) / "target")
            print(json.dumps({"benchmark": "latency_under_attack", "phase": "after",
                              "audit_ok": check.verify_audit().ok}), flush=True)
            check.close()


if __name__ == "__main__":
    main()
