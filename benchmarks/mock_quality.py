"""How useful and how risky tier-0 and tier-1 mocks are on public datasets that installed packages
ship (scikit-learn's diabetes, statsmodels' fair and randhie) and on the demo's hospitals; a GLM
fitted on the tier-1 mock next to the same GLM on the real data; time and memory to build a mock
(with its report) for a large dataset. Prints JSON lines.

Every dataset also gets a ``real_holdout`` line: the same utility figures for half the real rows
against the other half, the noise floor no synthesizer can beat.

    python benchmarks/mock_quality.py [--big-rows 1000000] [--skip-big]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd

SEED = 20261205


def datasets() -> dict[str, tuple[pd.DataFrame, str, str]]:
    """name -> (frame, GLM formula, family) loaded from the installed packages, no download."""
    import statsmodels.api as sm
    from sklearn.datasets import load_diabetes

    from fednb.demo import data

    diabetes = load_diabetes(as_frame=True, scaled=False).frame
    diabetes["sex"] = diabetes["sex"].map({1.0: "F", 2.0: "M"})
    fair = sm.datasets.fair.load_pandas().data
    fair["had_affair"] = (fair["affairs"] > 0).astype(int)
    fair = fair.drop(columns="affairs")
    randhie = sm.datasets.randhie.load_pandas().data
    hospital = data.hospital("hospital-a")
    return {
        "sklearn_diabetes": (diabetes, "target ~ age + C(sex) + bmi + bp + s5", "gaussian"),
        "statsmodels_fair": (fair, "had_affair ~ rate_marriage + age + yrs_married + religious + educ", "binomial"),
        "statsmodels_randhie": (randhie, "mdvis ~ lncoins + idp + lpi + fmde + physlm + disea", "poisson"),
        "demo_hospital_a": (hospital, "readmitted ~ age + bmi + C(sex) + smoker + diabetes", "binomial"),
    }


def quality(name: str, real: pd.DataFrame) -> list[dict]:
    from fednb.domain.data import mock_report, mock_review
    from fednb.domain.review.policy import Policy

    lines = []
    for tier in (0, 1):
        policy = Policy.model_validate({"domain": {"name": "bench"}, "mock": {"tier": tier}})
        t = time.perf_counter()
        mock, report = mock_review.build(real, name, policy, SEED)
        u, r = report["utility"], report["risk"]
        lines.append({"benchmark": "mock_quality", "dataset": name, "rows": len(real), "tier": tier,
                      "mock_rows": len(mock), "seconds": round(time.perf_counter() - t, 3),
                      "mean_marginal_distance": u["mean_marginal_distance"],
                      "correlation_error_mean": u["correlation_error"]["mean"],
                      "correlation_error_max": u["correlation_error"]["max"],
                      "pmse": u["pmse"], "pmse_ratio": u["pmse_ratio"],
                      "exact_match_rate": r["exact_match_rate"], "rare_match_rate": r["rare_match_rate"],
                      "closer_to_real": r["closer_to_real"], "dcr_mock": r["dcr_mock"], "dcr_holdout": r["dcr_holdout"],
                      "rare_category_exposure": r["rare_category_exposure"]})
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(real))
    half = len(real) // 2
    train, holdout = real.iloc[order[:half]], real.iloc[order[half:half + min(half, 500)]]
    ref = mock_report.build_report(train, holdout.reset_index(drop=True), lambda tr, n: tr.head(n), k=5, tier=-1)
    lines.append({"benchmark": "mock_quality", "dataset": name, "tier": "real_holdout",
                  "mean_marginal_distance": ref["utility"]["mean_marginal_distance"],
                  "correlation_error_mean": ref["utility"]["correlation_error"]["mean"],
                  "correlation_error_max": ref["utility"]["correlation_error"]["max"],
                  "pmse_ratio": ref["utility"]["pmse_ratio"]})
    return lines


def glm_side_by_side(name: str, real: pd.DataFrame, formula: str, family: str) -> dict:
    """The same GLM on the real data and on a tier-1 mock as long as the real data (so the
    comparison is about the synthesizer, not about the served mock's 500 rows)."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    from fednb.domain.data.mock import make_mock

    fam = {"gaussian": sm.families.Gaussian(), "binomial": sm.families.Binomial(), "poisson": sm.families.Poisson()}[family]
    mock = make_mock(real, min_cell_count=5, rows=len(real), seed=SEED, tier=1)
    fit_real = smf.glm(formula, real, family=fam).fit()
    fit_mock = smf.glm(formula, mock, family=fam).fit()
    coefs = {term: {"real": round(float(fit_real.params[term]), 4), "mock": round(float(fit_mock.params.get(term, np.nan)), 4),
                    "real_se": round(float(fit_real.bse[term]), 4)}
             for term in fit_real.params.index}
    same_sign = [np.sign(v["real"]) == np.sign(v["mock"]) for t, v in coefs.items() if t != "Intercept"]
    return {"benchmark": "mock_glm", "dataset": name, "formula": formula, "family": family, "coefficients": coefs,
            "same_sign": f"{sum(same_sign)}/{len(same_sign)}"}


def big(rows: int, tier: int) -> dict:
    """Time and peak memory to build a mock and its report for ``rows`` rows, in a fresh process."""
    code = f"""
import json, resource, time
from fednb.demo.data import patients
from fednb.domain.data import mock_review
from fednb.domain.review.policy import Policy
df = patients({rows}, age=(55, 14), bmi=(27.0, 4.5), smoker=0.25, male=0.5, seed=1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
policy = Policy.model_validate({{"domain": {{"name": "bench"}}, "mock": {{"tier": {tier}}}}})
t = time.perf_counter()
mock, report = mock_review.build(df, "big", policy, 1)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from fednb.domain.data.mock import make_mock
t = time.perf_counter()
make_mock(df, min_cell_count=5, rows=len(mock), seed=2, tier={tier})
mock_only = time.perf_counter() - t
t = time.perf_counter()
sample = df.sample(len(mock), random_state=0)
plain = time.perf_counter() - t
print(json.dumps({{"benchmark": "mock_build_time", "rows": {rows}, "tier": {tier}, "mock_rows": len(mock),
                   "seconds_with_report": round(seconds, 2), "seconds_mock_only": round(mock_only, 2),
                   "peak_rss_mb": round(peak / 1024, 1), "extra_peak_mb": round((peak - before) / 1024, 1),
                   "data_mb": round(df.memory_usage(deep=True).sum() / 2**20, 1),
                   "plain_pandas_sample_seconds": round(plain, 4)}}))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated dataset names")
    args = parser.parse_args()
    for name, (frame, formula, family) in datasets().items():
        if args.only and name not in args.only.split(","):
            continue
        for line in quality(name, frame):
            print(json.dumps(line), flush=True)
        print(json.dumps(glm_side_by_side(name, frame, formula, family)), flush=True)
    if not args.skip_big:
        for tier in (0, 1):
            print(json.dumps(big(args.big_rows, tier)), flush=True)


if __name__ == "__main__":
    main()
