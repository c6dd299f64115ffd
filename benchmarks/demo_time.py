"""How long ``fednb demo`` takes, start to finish, as a user runs it (issue 3: under 60 s on 2 cores).

    python benchmarks/demo_time.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times, failures = [], 0
    for _ in range(args.runs):
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "fednb", "demo"], capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        failures += done.returncode != 0
    print(json.dumps({"benchmark": "demo_time", "runs": args.runs, "failed_runs": failures,
                      "median_s": round(statistics.median(times), 2), "max_s": round(max(times), 2),
                      "target_s": 60}))


if __name__ == "__main__":
    main()
