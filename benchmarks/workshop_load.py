"""A class at once: N participants (30 by default), each with their own token, hit one teacher's three
workshop domains at the same moment, each doing the tour's statistics (count, mean, histogram,
crosstab, the pre-approved custom function, the plant's mean yield).

Prints one JSON line for the set-up (inviting the class, one review of the exercise) and one per way
of running the participants: as processes (like a class of separate kernels; the default) and as
threads of one process. Each gives the time until every participant had all answers and the
per-participant latency percentiles (nearest rank), and whether every participant got every answer.

    python benchmarks/workshop_load.py [--students 30] [--mode processes|threads|both] [--dir DIR]

``--dir`` rehearses on a teacher's own folder (``fednb workshop serve DIR``, already running: it
invites ``rehearsal01..`` there); without it, a temporary workshop is served and removed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fednb.demo import classroom, workshop  # noqa: E402


def measure(urls: list[str], tokens: dict[str, str], processes: bool) -> dict:
    seconds, reports = classroom.run_class(urls, tokens, processes=processes)
    first = reports[0]["answers"]
    complete = all(r["answers"] == first for r in reports) and first["count"] > 0 and len(first["function"]) == 2
    steps = {name: round(statistics.median(r["steps"][name] for r in reports), 4) for name in reports[0]["steps"]}
    return {"benchmark": "workshop_load", "mode": "processes" if processes else "threads",
            "participants": len(reports), "domains": len(urls), "seconds_all": round(seconds, 3),
            "latency_s": {k: round(v, 3) for k, v in classroom.percentiles([r["seconds"] for r in reports]).items()},
            "step_median_s": steps, "all_answered": complete, "cores": os.cpu_count()}


def run(root: Path, urls: list[str], students: int, modes: list[str], prefix: str) -> None:
    folders = {name: root / name for name in workshop.DOMAINS}
    began = time.perf_counter()
    tokens = classroom.invite_class(folders, students, prefix)
    invited = time.perf_counter() - began
    classroom.preapprove(urls, tokens, folders)
    print(json.dumps({"benchmark": "workshop_load", "measure": "setup", "participants": students,
                      "invite_s": round(invited, 3), "invite_and_review_s": round(time.perf_counter() - began, 3)}),
          flush=True)
    for mode in modes:
        print(json.dumps(measure(urls, tokens, mode == "processes")), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--mode", choices=["processes", "threads", "both"], default="both")
    parser.add_argument("--dir", type=Path, default=None, help="a running workshop's folder (fednb workshop serve DIR)")
    args = parser.parse_args()
    modes = ["processes", "threads"] if args.mode == "both" else [args.mode]
    if args.dir is not None:
        from fednb.client import profile

        run(args.dir.resolve(), [d["url"] for d in profile.load(workshop.PROFILE)], args.students, modes,
            f"rehearsal{int(time.time()) % 100000}-")
        return
    with tempfile.TemporaryDirectory(prefix="fednb-workshop-load-") as tmp:
        os.environ["FEDNB_HOME"] = str(Path(tmp) / "home")
        servers = workshop.serve(Path(tmp) / "domains", port=0)
        try:
            run(Path(tmp) / "domains", [s.url for s in servers], args.students, modes, "student")
        finally:
            for s in servers:
                s.stop()


if __name__ == "__main__":
    main()
