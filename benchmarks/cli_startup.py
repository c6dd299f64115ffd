"""How long the owner's everyday commands take from the shell, next to a bare interpreter.

Each command runs ``--runs`` times in a fresh process (as an owner types it); the median wall time
is printed with that of ``python -c pass`` and of ``python -c "import pandas"`` measured in the same
run, so a loaded machine shows as a slower baseline, not as a slower fednb. The median CPU time
(user + system) of each command is printed too: on a shared machine it moves far less than wall time.
Target: each command within 1 s.

    python benchmarks/cli_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fednb.demo import data  # noqa: E402
from fednb.demo.local import create_domain  # noqa: E402
from fednb.models import RequestIn  # noqa: E402


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], check: bool = False) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of ``argv`` in a fresh process."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    subprocess.run(argv, capture_output=True, check=check)
    return time.perf_counter() - t0, children_cpu() - cpu0


def medians(samples: list[tuple[float, float]]) -> dict[str, float]:
    return {"median_s": round(statistics.median(w for w, _ in samples), 3),
            "median_cpu_s": round(statistics.median(c for _, c in samples), 3)}


def wall(argv: list[str], runs: int) -> float:
    return statistics.median(timed(argv)[0] for _ in range(runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = create_domain(Path(tmp), "hospital-a", data.hospital("hospital-a"), "patients", analyst="alice",
                          token="fednb_" + "t" * 40)
        for i in range(args.runs):
            d.receive("alice", RequestIn(dataset="patients", kind="function", name=f"f{i}",
                                         code=f"def f{i}(df):\n    return {i}\n"))
        pending = [r.id for r in d.requests(status="pending")]
        d.close()
        folder = str(Path(tmp) / "hospital-a")
        fednb = [sys.executable, "-m", "fednb"]
        baseline = wall([sys.executable, "-c", "pass"], args.runs)
        pandas = wall([sys.executable, "-c", "import pandas"], args.runs)
        commands = {
            "fednb --help": [*fednb, "--help"],
            "fednb domain --help": [*fednb, "domain", "--help"],
            "fednb domain requests DIR": [*fednb, "domain", "requests", folder],
            "fednb domain info DIR": [*fednb, "domain", "info", folder],
        }
        for name, argv in commands.items():
            print(json.dumps({"command": name, **medians([timed(argv) for _ in range(args.runs)]),
                              "python_pass_s": round(baseline, 3), "import_pandas_s": round(pandas, 3),
                              "runs": args.runs}))
        # each approval changes state, so each run approves another request
        times = [timed([*fednb, "domain", "approve", folder, rid, "--reason", "ok"], check=True) for rid in pending]
        print(json.dumps({"command": "fednb domain approve DIR ID", **medians(times),
                          "python_pass_s": round(baseline, 3), "import_pandas_s": round(pandas, 3),
                          "runs": len(times)}))


if __name__ == "__main__":
    main()
