"""Federated survival analysis through real domain servers against lifelines on the concatenated rows.

Two datasets lifelines ships (loaded from the package, no download): the Rossi recidivism study
(432 released prisoners, weeks to re-arrest) and the kidney transplant cohort (863 patients, days to
death). Each is split over 3 domains with different case mix (sorted by age with noise, 40/35/25%).
The domains' policy sets ``rows_per_value = 1``: with the default 10, a Cox interval must have a
risk set of 10 rows per value it releases (730 for Rossi's 7 Efron terms), more than these small
studies hold per domain; everything else is the default (min_cohort 10, min_cell_count 5).

One JSON line per comparison:
- ``km``: largest absolute difference of survival and band from ``KaplanMeierFitter`` on the binned
  rows, at every grid point the domains kept;
- ``logrank``: the χ² against ``multivariate_logrank_test`` on the binned rows;
- ``cox``: largest relative difference of coefficients and standard errors from ``CoxPHFitter``
  (Efron) on the binned rows, or, for ``strata="domain"``, on the exact rows stratified by domain;
  and ``binning_*``: how far the binned fit is from the unbinned pooled fit (what binning changes);
  rounds and the median wall time of a federated fit;
- ``binning``: lifelines on rows binned to 4..104 equal intervals against lifelines on the exact
  rows, the shift of each coefficient in units of its standard error (binning alone, no domains).

    python benchmarks/survival_parity.py [--runs 3] [--points 26]
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
from fednb.demo.local import create_domain, serving  # noqa: E402
from fednb.domain.domain import new_token  # noqa: E402

DOMAINS = ("site-a", "site-b", "site-c")
SHARES = (0.40, 0.35, 0.25)
POLICY = {"rows_per_value = 10": "rows_per_value = 1"}


def datasets() -> dict[str, dict]:
    from lifelines.datasets import load_kidney_transplant, load_rossi

    return {
        "rossi": {"frame": load_rossi(), "duration": "week", "event": "arrest", "by": "fin",
                  "terms": "fin + age + race + wexp + mar + paro + prio"},
        "kidney_transplant": {"frame": load_kidney_transplant(), "duration": "time", "event": "death",
                              "by": "white_male", "terms": "age + black_male + white_male + black_female"},
    }


def split(frame: pd.DataFrame, seed: int = 7) -> dict[str, pd.DataFrame]:
    """Three domains with different case mix: rows ordered by age plus noise, cut 40/35/25%."""
    rng = np.random.default_rng(seed)
    order = np.argsort(frame["age"].to_numpy() + rng.normal(0, frame["age"].std() / 2, len(frame)))
    cuts = np.cumsum([0, *(int(round(s * len(frame))) for s in SHARES[:-1]), len(frame)])
    cuts[-1] = len(frame)
    return {d: frame.iloc[order[a:b]].reset_index(drop=True) for d, a, b in zip(DOMAINS, cuts, cuts[1:])}


def binned(frame: pd.DataFrame, duration: str, event: str, times: list[float]) -> pd.DataFrame:
    """Durations moved to the end of their interval; after the last point: censored just beyond it."""
    from fednb.partial_likelihood import intervals

    idx = intervals(frame[duration].to_numpy(float), np.asarray(times))
    inside = idx < len(times)
    grid = np.asarray(times)
    return frame.assign(**{duration: np.where(inside, grid[np.minimum(idx, len(times) - 1)], times[-1] + 1.0),
                           event: np.where(inside, frame[event], 0)})


def max_rel(ours: pd.Series, ref: pd.Series) -> float:
    return float(np.max(np.abs(ours[ref.index].to_numpy() - ref.to_numpy()) / np.abs(ref.to_numpy())))


def km_rows(name: str, spec: dict, ds, pooled: pd.DataFrame, points: int) -> list[dict]:
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    d, e, by = spec["duration"], spec["event"], spec["by"]
    t = time.perf_counter()
    km = ds.kaplan_meier(d, e, time_grid=points)
    wall = time.perf_counter() - t
    times = list(km.table["time"])
    ref = KaplanMeierFitter().fit(binned(pooled, d, e, times)[d], binned(pooled, d, e, times)[e])
    sf = ref.survival_function_at_times(times).to_numpy()
    ci = ref.confidence_interval_.loc[times].to_numpy()
    rows = [{"benchmark": "survival_parity", "what": "km", "dataset": name, "grid_points": points,
             "points_kept": len(times), "max_abs_diff_survival": float(np.max(np.abs(km.table["survival"] - sf))),
             "max_abs_diff_band": float(np.max(np.abs(km.table[["lower", "upper"]].to_numpy() - ci))),
             "wall_s": round(wall, 4)}]
    lr = ds.logrank(d, e, by, time_grid=points)
    b = binned(pooled, d, e, lr.grid)
    ref_lr = multivariate_logrank_test(b[d], b[by], b[e])
    rows.append({"benchmark": "survival_parity", "what": "logrank", "dataset": name, "by": by,
                 "points_kept": len(lr.grid), "chi2": lr.statistic, "chi2_lifelines": float(ref_lr.test_statistic),
                 "rel_diff": abs(lr.statistic - ref_lr.test_statistic) / ref_lr.test_statistic})
    return rows


def cox_rows(name: str, spec: dict, ds, pooled: pd.DataFrame, frames: dict, points: int, runs: int) -> list[dict]:
    from lifelines import CoxPHFitter

    d, e = spec["duration"], spec["event"]
    formula = f"{d} + {e} ~ {spec['terms']}"
    cols = [c.strip() for c in spec["terms"].split("+")]
    opts = {"precision": 1e-12}
    exact = CoxPHFitter().fit(pooled[[d, e, *cols]], d, e, fit_options=opts)
    rows = []
    for strata in (None, "domain"):
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            fit = fednb.coxph(formula, data=ds, strata=strata, time_grid=points)
            times.append(time.perf_counter() - t)
        if strata is None:
            ref = CoxPHFitter().fit(binned(pooled, d, e, fit.grid)[[d, e, *cols]], d, e, fit_options=opts)
        else:
            rows_by = pd.concat([f.assign(domain=k) for k, f in frames.items()], ignore_index=True)
            ref = CoxPHFitter().fit(rows_by[[d, e, *cols, "domain"]], d, e, strata=["domain"], fit_options=opts)
        rows.append({"benchmark": "survival_parity", "what": "cox", "dataset": name, "ties": "efron",
                     "strata": strata, "n": fit.nobs, "events": fit.events, "params": len(fit.params),
                     "grid_points": None if strata else points, "points_kept": None if strata else len(fit.grid),
                     "max_rel_diff_coef": max_rel(fit.params, ref.params_),
                     "max_rel_diff_se": max_rel(fit.bse, ref.standard_errors_),
                     "abs_diff_loglik": abs(fit.loglik - ref.log_likelihood_),
                     "binning_max_rel_diff_coef": max_rel(fit.params, exact.params_) if strata is None else None,
                     "binning_max_rel_diff_se": max_rel(fit.bse, exact.standard_errors_) if strata is None else None,
                     "binning_max_shift_in_se": float(np.max(np.abs((fit.params - exact.params_[fit.params.index])
                                                                     / exact.standard_errors_[fit.params.index])))
                     if strata is None else None,
                     "iterations": fit.iterations, "rounds": fit.rounds, "runs": runs,
                     "wall_median_s": round(statistics.median(times), 4)})
    return rows


def binning_rows(name: str, spec: dict, pooled: pd.DataFrame) -> list[dict]:
    """What binning alone changes (no domain, no coarsening): lifelines on rows binned to equal grids
    over the observed range against lifelines on the exact rows."""
    from lifelines import CoxPHFitter

    d, e = spec["duration"], spec["event"]
    cols = [c.strip() for c in spec["terms"].split("+")]
    exact = CoxPHFitter().fit(pooled[[d, e, *cols]], d, e, fit_options={"precision": 1e-12})
    rows = []
    hi = float(pooled[d].max())
    for points in (4, 13, 26, 52, 104):
        grid = [hi * k / points for k in range(1, points + 1)]
        ref = CoxPHFitter().fit(binned(pooled, d, e, grid)[[d, e, *cols]], d, e, fit_options={"precision": 1e-12})
        z = (ref.params_ - exact.params_) / exact.standard_errors_
        rows.append({"benchmark": "survival_parity", "what": "binning", "dataset": name, "grid_points": points,
                     "max_rel_diff_coef": max_rel(ref.params_, exact.params_),
                     "max_rel_diff_se": max_rel(ref.standard_errors_, exact.standard_errors_),
                     "max_shift_in_se": float(np.max(np.abs(z)))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--points", type=int, default=26)
    args = parser.parse_args()
    token = new_token()
    for name, spec in datasets().items():
        frames = split(spec["frame"])
        pooled = pd.concat(frames.values(), ignore_index=True)
        for row in binning_rows(name, spec, pooled):
            print(json.dumps(row), flush=True)
        with tempfile.TemporaryDirectory(prefix="fednb-bench-") as tmp:
            root = Path(tmp)
            for domain, frame in frames.items():
                create_domain(root, domain, frame, name, token=token, policy_edits=POLICY).close()
            with serving([root / domain for domain in DOMAINS]) as servers:
                fed = fednb.connect([s.url for s in servers], token=token)
                ds = fed.dataset(name)
                for row in km_rows(name, spec, ds, pooled, args.points) + cox_rows(
                        name, spec, ds, pooled, frames, args.points, args.runs):
                    print(json.dumps(row), flush=True)
                fed.close()


if __name__ == "__main__":
    main()
