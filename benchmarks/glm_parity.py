"""Federated GLMs through real domain servers against statsmodels on the concatenated rows.

Two domains (the demo hospitals, with a Poisson count ``visits`` added) on 127.0.0.1. For each
family, one JSON line: the largest relative difference of coefficients and standard errors from
statsmodels (converged to tol=1e-12, and at its default tol=1e-8, whose covariance lags one step),
the median wall time of a federated fit (every round a request to each domain) and its rounds.

    python benchmarks/glm_parity.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import fednb  # noqa: E402
from fednb.demo import data  # noqa: E402
from fednb.demo.local import create_domain, serving  # noqa: E402
from fednb.domain.domain import new_token  # noqa: E402

MODELS = [
    ("gaussian", "systolic_bp ~ age + bmi + C(sex) + smoker + diabetes"),
    ("binomial", "readmitted ~ age + bmi + C(sex) + smoker + diabetes"),
    ("poisson", "visits ~ age + bmi + C(sex) + smoker + diabetes"),
]


def _max_rel(ours: pd.Series, ref: pd.Series) -> float:
    return float(np.max(np.abs(ours[ref.index].to_numpy() - ref.to_numpy()) / np.abs(ref.to_numpy())))


def main() -> None:
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    token = new_token()
    frames = [data.with_visits(data.hospital(name), seed) for name, seed in zip(data.HOSPITALS, (1, 2))]
    pooled = pd.concat(frames, ignore_index=True)
    pooled = pooled.assign(smoker=pooled.smoker.astype(int), diabetes=pooled.diabetes.astype(int))
    families = {"gaussian": sm.families.Gaussian(), "binomial": sm.families.Binomial(),
                "poisson": sm.families.Poisson()}
    with tempfile.TemporaryDirectory(prefix="fednb-bench-") as tmp:
        root = Path(tmp)
        for name, frame in zip(data.HOSPITALS, frames):
            create_domain(root, name, frame, "patients", token=token).close()
        with serving([root / name for name in data.HOSPITALS]) as servers:
            fed = fednb.connect([s.url for s in servers], token=token)
            ds = fed.dataset("patients")
            fednb.glm(MODELS[0][1], data=ds)  # warm connections and the domains' imports
            for family, formula in MODELS:
                times = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    fit = fednb.glm(formula, data=ds, family=family)
                    times.append(time.perf_counter() - t)
                row = {"benchmark": "glm_parity", "family": family, "formula": formula, "domains": len(servers),
                       "n": fit.nobs, "params": len(fit.params)}
                for label, tol in (("", 1e-12), ("_sm_default_tol", 1e-8)):
                    ref = smf.glm(formula, pooled, family=families[family]).fit(tol=tol)
                    row[f"max_rel_diff_coef{label}"] = _max_rel(fit.params, ref.params)
                    row[f"max_rel_diff_se{label}"] = _max_rel(fit.bse, ref.bse)
                row.update({"iterations": fit.iterations, "rounds": fit.rounds, "runs": args.runs,
                            "wall_median_s": round(statistics.median(times), 4),
                            "wall_per_round_s": round(statistics.median(times) / fit.rounds, 4)})
                print(json.dumps(row), flush=True)
            fed.close()


if __name__ == "__main__":
    main()
