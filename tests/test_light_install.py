"""``pip install fednb`` is the analyst's client alone: it pulls none of the domain's packages, the
client's whole path (connect, pooled statistics, a secure sum, GLM, Kaplan–Meier, Cox, requests)
runs with them absent, and an owner's command on such an install says what to install."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import fednb

ROOT = Path(__file__).resolve().parents[1]
DOMAIN_ONLY = ("fastapi", "uvicorn", "starlette", "scipy", "pyarrow", "formulaic", "pyroaring")
NEVER_FOR_ANALYSTS = (*DOMAIN_ONLY, "torch", "statsmodels")
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

# Run first in a child interpreter: these packages cannot be imported there, as on a light install.
ABSENT = textwrap.dedent(f"""
    import importlib.abc, sys
    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {NEVER_FOR_ANALYSTS!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None
    sys.meta_path.insert(0, Absent())
""")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution ``requirements`` pull, transitively, as pip would install them (no extras)."""
    seen: set[str] = set()
    todo = [NAME.match(r).group(1) for r in requirements]
    while todo:
        name = _normal(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            if "extra ==" not in line and (";" not in line or _marker_holds(line.split(";", 1)[1])):
                todo.append(NAME.match(line).group(1))
    return seen


def _marker_holds(marker: str) -> bool:
    from packaging.markers import Marker

    return Marker(marker).evaluate()


def test_the_analyst_install_pulls_no_domain_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pulled = _closure(project["dependencies"])
    assert {"pandas", "numpy", "httpx", "cryptography", "mpmath"} <= pulled
    assert not pulled & {_normal(n) for n in NEVER_FOR_ANALYSTS}, pulled & set(NEVER_FOR_ANALYSTS)
    owners = {_normal(NAME.match(r).group(1)) for r in project["optional-dependencies"]["domain"]}
    assert {"fastapi", "uvicorn", "scipy", "pyarrow", "formulaic", "pyroaring"} <= owners
    assert "fednb[domain,learn,jupyter,test]" in project["optional-dependencies"]["all"]


def _analyst_session(urls: list[str], token: str) -> dict:
    script = ABSENT + textwrap.dedent(f"""
        import json, sys
        import fednb
        fed = fednb.connect({urls!r}, token={token!r})
        ds = fed.dataset("patients")
        out = {{"mean": float(ds.mean("age").value), "secure_count": float(ds.count(secure=True).value)}}
        fit = fednb.glm("readmitted ~ age + bmi + C(sex)", data=ds, family="binomial")
        out["glm"] = {{"params": fit.params.tolist(), "pvalues": fit.pvalues.tolist(),
                       "ci": fit.conf_int().to_numpy().tolist()}}
        gauss = fednb.glm("bmi ~ age + C(sex)", data=ds, family="gaussian")
        out["gaussian"] = {{"pvalues": gauss.pvalues.tolist(), "ci": gauss.conf_int().to_numpy().tolist()}}
        km = ds.kaplan_meier("followup_days", "died", time_grid=10)
        out["km"] = km.survival().tolist()
        out["km_summary"] = repr(km)
        cox = fednb.coxph("followup_days + died ~ age + C(sex)", data=ds, time_grid=20)
        out["cox"] = {{"params": cox.params.tolist(), "lr_p": cox.likelihood_ratio_test["p_value"]}}
        out["requests"] = len(fed.requests())
        out["summaries"] = [repr(fit), repr(cox)]
        fed.close()
        out["loaded"] = sorted({{m.split(".")[0] for m in sys.modules}} & set({NEVER_FOR_ANALYSTS!r}))
        print("RESULT " + json.dumps(out))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.split("RESULT ", 1)[1])


def test_the_analyst_client_runs_without_any_domain_package(hospitals, alice_token, patients):
    out = _analyst_session([d.url for d in hospitals], alice_token)
    assert out["loaded"] == []
    # the same numbers as this process's client, which has scipy and formulaic at hand
    assert out["mean"] == pytest.approx(float(patients.mean("age").value), rel=1e-12)
    fit = fednb.glm("readmitted ~ age + bmi + C(sex)", data=patients, family="binomial")
    np.testing.assert_allclose(out["glm"]["params"], fit.params, rtol=1e-9)
    np.testing.assert_allclose(out["glm"]["pvalues"], fit.pvalues, rtol=1e-9)
    np.testing.assert_allclose(out["glm"]["ci"], fit.conf_int().to_numpy(), rtol=1e-9)
    gauss = fednb.glm("bmi ~ age + C(sex)", data=patients, family="gaussian")
    np.testing.assert_allclose(out["gaussian"]["pvalues"], gauss.pvalues, rtol=1e-9)
    np.testing.assert_allclose(out["gaussian"]["ci"], gauss.conf_int().to_numpy(), rtol=1e-9)
    cox = fednb.coxph("followup_days + died ~ age + C(sex)", data=patients, time_grid=20)
    np.testing.assert_allclose(out["cox"]["params"], cox.params, rtol=1e-9)
    assert out["cox"]["lr_p"] == pytest.approx(cox.likelihood_ratio_test["p_value"], rel=1e-9)
    km = patients.kaplan_meier("followup_days", "died", time_grid=10)
    np.testing.assert_allclose(out["km"], km.survival().tolist(), rtol=1e-12)
    assert out["secure_count"] == sum(len(d.frame) for d in hospitals)
    assert out["requests"] >= 5  # the analyst's own requests are listed


def test_an_owner_command_without_the_domain_side_says_what_to_install(tmp_path):
    script = ABSENT + textwrap.dedent(f"""
        import sys
        from fednb.cli import main
        sys.argv = ["fednb", "domain", "serve", {str(tmp_path / "clinic")!r}]
        main()
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "install fednb[domain] to serve a domain" in run.stderr
    assert "Traceback" not in run.stderr
