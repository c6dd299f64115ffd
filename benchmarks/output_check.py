"""Cost of checking a custom function's fednb.table in the domain, against computing the same table
with plain pandas, and the bytes per row the table's rows add to the result pipe.

    python benchmarks/output_check.py --rows 10000 100000
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

import fednb
from fednb import codec
from fednb.domain.release.output_check import OutputChecker
from fednb.domain.review.policy import DisclosureSection


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for n in args.rows:
        df = pd.DataFrame({"age": rng.integers(18, 90, n), "bmi": rng.normal(27, 4, n).round(1),
                           "sex": rng.choice(["F", "M"], n), "smoker": rng.random(n) < 0.2})
        for agg, value in (("count", None), ("mean", "bmi")):
            encoded = codec.encode(fednb.table(df, by=["sex", "smoker"], value=value, agg=agg))
            checked, plain = [], []
            for _ in range(args.runs):
                t = time.perf_counter()
                OutputChecker(DisclosureSection(), df).check(encoded)
                checked.append(time.perf_counter() - t)
                t = time.perf_counter()
                g = df.groupby(["sex", "smoker"])
                g.size() if value is None else g[value].agg(["size", "mean"])
                plain.append(time.perf_counter() - t)
            print(json.dumps({"rows": n, "agg": agg, "pipe_bytes_per_row": round(len(json.dumps(encoded)) / n, 1),
                              "check_median_s": round(float(np.median(checked)), 4),
                              "pandas_groupby_median_s": round(float(np.median(plain)), 4)}))


if __name__ == "__main__":
    main()
