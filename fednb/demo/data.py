"""Synthetic data for the demo, the tutorials and the tests: two hospitals and a lithium plant.

Nothing here is real. The hospitals' patients follow one known logistic model of readmission
(:data:`READMISSION_MODEL`) with a different case mix per hospital, so a federated regression can be
checked against the truth; the plant's brine batches follow a known yield curve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# logit P(readmitted) = intercept + sum(coef * x); sex enters as an indicator of "M"
READMISSION_MODEL: dict[str, float] = {
    "Intercept": -6.2, "age": 0.035, "bmi": 0.07, "C(sex)[T.M]": 0.35, "smoker": 0.6, "diabetes": 0.8,
}

HOSPITALS: dict[str, dict] = {
    # an urban teaching hospital with younger patients
    "hospital-a": {"rows": 1200, "age": (50, 15), "bmi": (26.0, 4.0), "smoker": 0.20, "male": 0.45, "seed": 11},
    # a regional hospital with an older, heavier-smoking population
    "hospital-b": {"rows": 800, "age": (63, 12), "bmi": (28.5, 5.0), "smoker": 0.35, "male": 0.55, "seed": 22},
}


def patients(rows: int, *, age: tuple[float, float], bmi: tuple[float, float], smoker: float, male: float,
             seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = np.clip(np.round(rng.normal(*age, rows)), 18, 95).astype(int)
    sex = np.where(rng.random(rows) < male, "M", "F")
    b = np.round(np.clip(rng.normal(*bmi, rows), 15, 55), 1)
    smokes = rng.random(rows) < smoker
    diabetes_logit = -7.5 + 0.05 * a + 0.12 * b
    diabetes = rng.random(rows) < 1 / (1 + np.exp(-diabetes_logit))
    sbp = np.round(95 + 0.5 * a + 0.8 * b + 6 * smokes + rng.normal(0, 12, rows)).astype(int)
    m = READMISSION_MODEL
    logit = (m["Intercept"] + m["age"] * a + m["bmi"] * b + m["C(sex)[T.M]"] * (sex == "M")
             + m["smoker"] * smokes + m["diabetes"] * diabetes)
    readmitted = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    followup, died = survival_times(a, sex, smokes, diabetes, seed)
    return pd.DataFrame({"age": a, "sex": sex, "bmi": b, "smoker": smokes, "systolic_bp": sbp,
                         "diabetes": diabetes, "readmitted": readmitted, "followup_days": followup, "died": died})


# log hazard ratios of death after discharge (a Cox model with a Weibull baseline, shape 1.2)
SURVIVAL_MODEL: dict[str, float] = {"age": 0.045, "C(sex)[T.M]": 0.25, "smoker": 0.55, "diabetes": 0.4}


def survival_times(age: np.ndarray, sex: np.ndarray, smoker: np.ndarray, diabetes: np.ndarray,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Days from discharge to death or to the end of follow-up (uniform over 1 to 5 years), and
    whether the patient died then; its own random stream, so the other columns stay as they were."""
    rng = np.random.default_rng(seed + 1000)
    m = SURVIVAL_MODEL
    lp = (m["age"] * (age - 60) + m["C(sex)[T.M]"] * (sex == "M") + m["smoker"] * smoker
          + m["diabetes"] * diabetes)
    shape, scale = 1.2, 2600.0  # days; about a quarter die within follow-up at the average risk
    death = scale * (rng.exponential(1.0, len(age)) / np.exp(lp)) ** (1 / shape)
    end = rng.uniform(365, 5 * 365, len(age))
    return np.ceil(np.minimum(death, end)).astype(int), (death <= end).astype(int)


def hospital(name: str) -> pd.DataFrame:
    return patients(**HOSPITALS[name])


# outpatient visits in the year after discharge, a count: log E[visits] = intercept + sum(coef * x)
VISITS_MODEL: dict[str, float] = {
    "Intercept": -1.0, "age": 0.018, "C(sex)[T.M]": -0.12, "smoker": 0.25, "diabetes": 0.45,
}


def with_visits(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``frame`` (a hospital's patients) plus a Poisson count ``visits`` following :data:`VISITS_MODEL`."""
    rng = np.random.default_rng(seed)
    m = VISITS_MODEL
    log_mean = (m["Intercept"] + m["age"] * frame["age"] + m["C(sex)[T.M]"] * (frame["sex"] == "M")
                + m["smoker"] * frame["smoker"] + m["diabetes"] * frame["diabetes"])
    return frame.assign(visits=rng.poisson(np.exp(log_mean.to_numpy(dtype=float))))


# recovery yield of lithium from brine: warmer, longer evaporation and richer brine recover more
YIELD_MODEL: dict[str, float] = {"Intercept": 0.20, "li_concentration_gl": 0.18, "temperature_c": 0.008,
                                 "evaporation_days": 0.0009}


def brine_batches(rows: int = 600, seed: int = 33) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pond = rng.choice([f"P{i}" for i in range(1, 7)], rows, p=[0.22, 0.2, 0.18, 0.16, 0.14, 0.10])
    pond_effect = {f"P{i}": e for i, e in enumerate([0.0, 0.01, -0.02, 0.03, -0.01, 0.02], 1)}
    li = np.round(np.clip(rng.normal(0.8, 0.2, rows), 0.2, 1.6), 3)
    temp = np.round(rng.normal(12, 6, rows), 1)
    days = rng.integers(120, 420, rows)
    m = YIELD_MODEL
    y = (m["Intercept"] + m["li_concentration_gl"] * li + m["temperature_c"] * temp
         + m["evaporation_days"] * days + np.array([pond_effect[p] for p in pond]) + rng.normal(0, 0.03, rows))
    failure, failed = pond_failures(pond, temp, seed)
    return pd.DataFrame({"batch": [f"B{seed}-{i:04d}" for i in range(rows)], "pond": pond,
                         "li_concentration_gl": li, "temperature_c": temp, "evaporation_days": days,
                         "recovery_yield": np.round(np.clip(y, 0.05, 0.95), 4),
                         "days_to_liner_failure": failure, "liner_failed": failed})


# log hazard ratios of a pond's liner tearing during a batch: freeze-thaw (cold) and the older ponds
LINER_MODEL: dict[str, float] = {"temperature_c": -0.05, "old_pond": 0.7}


def pond_failures(pond: np.ndarray, temp: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Days until the liner under a batch failed, or until the batch was harvested (censored)."""
    rng = np.random.default_rng(seed + 1000)
    old = np.isin(pond, ["P1", "P2"])
    lp = LINER_MODEL["temperature_c"] * (temp - 12) + LINER_MODEL["old_pond"] * old
    failure = 900.0 * rng.exponential(1.0, len(pond)) / np.exp(lp)
    harvest = rng.uniform(120, 420, len(pond))
    return np.ceil(np.minimum(failure, harvest)).astype(int), (failure <= harvest).astype(int)
