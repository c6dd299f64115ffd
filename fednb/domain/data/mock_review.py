"""The owner's sign-off on a mock, and the rule that decides whether analysts are served it.

A mock is built and measured (:mod:`fednb.domain.data.mock_report`) when its dataset is added. Its
state lives in the dataset's metadata (``Dataset.mock``): tier, ``status`` ("unreviewed" or
"approved") and the summary figures. Approval is one transaction with its audit row, so a crash
never leaves an approval unrecorded. Served means: approved by the owner, or a tier-0 mock under a
policy that serves those unreviewed; and, either way, its measured risk within the policy's limits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from fednb.domain.audit import log as audit
from fednb.domain.data import mock as mocks
from fednb.domain.data import mock_report
from fednb.domain.review.policy import Policy
from fednb.domain.store import datasets as dataset_rows
from fednb.errors import Conflict, NotFound
from fednb.models import Dataset

REPORT_FILE = "mock_report.json"


def build(df: pd.DataFrame, dataset: str, policy: Policy, seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The dataset's mock and its full report (utility, risk), as the policy asks for them."""
    k = policy.disclosure.min_cell_count
    tier = policy.mock.tier_of(dataset)
    rows = mocks.mock_rows(len(df), policy.disclosure.round_counts_to, policy.mock.rows)
    mock = mocks.make_mock(df, min_cell_count=k, rows=rows, seed=seed, tier=tier)

    def shadow(train: pd.DataFrame, n: int) -> pd.DataFrame:
        return mocks.make_mock(train, min_cell_count=k, rows=n, seed=seed + 1, tier=tier)

    report = mock_report.build_report(df, mock, shadow, k=k, tier=tier, seed=seed)
    return mock, report


def initial_state(report: dict[str, Any]) -> dict[str, Any]:
    """What ``Dataset.mock`` holds for a freshly built mock: not yet reviewed."""
    return {**mock_report.summary(report), "status": "unreviewed", "report_sha256": report["sha256"]}


def refusal(state: dict[str, Any] | None, policy: Policy, dataset: str) -> str | None:
    """Why the mock may not be served to an analyst now, or ``None`` if it may."""
    if state is None:  # a mock made before mocks were measured: an unreviewed tier-0 mock
        if policy.mock.serve_unreviewed == "tier-0":
            return None
        return f"the mock of {dataset!r} is waiting for the owner to add the dataset again and approve its mock"
    closer = state.get("closer_to_real")
    if state.get("rare_match_rate"):
        return (f"the mock of {dataset!r} is withheld: some of its rows equal rare real records; "
                "the owner must rebuild it")
    if closer is not None and closer > policy.mock.max_closer_to_real:
        return (f"the mock of {dataset!r} is withheld: it sits closer to the real rows than the policy allows "
                f"({closer:.2f} > {policy.mock.max_closer_to_real}); ask the owner for a lower tier")
    if state.get("status") == "approved":
        return None
    if state.get("tier") == 0 and policy.mock.serve_unreviewed == "tier-0":
        return None
    return f"the mock of {dataset!r} is waiting for the owner's approval; ask the owner to review it"


def mock_json(domain, dataset: str, *, owner: bool = False) -> dict:
    """The mock as ``{"columns", "dtypes", "data"}``, if it may be served (owners always see it)."""
    meta = domain.dataset(dataset)
    path = domain.mock_path(dataset)
    if not path.exists():
        raise NotFound(f"dataset {dataset!r} has no mock")
    why = None if owner else refusal(meta.mock, domain.policy, dataset)
    if why:
        raise Conflict(why)
    df = pd.read_parquet(path)
    return {"columns": list(df.columns), "dtypes": {c: str(t) for c, t in df.dtypes.items()},
            "data": json.loads(df.to_json(orient="values", date_format="iso"))}


def read_report(mock_path: Path) -> dict[str, Any]:
    path = mock_path.with_name(REPORT_FILE)
    if not path.exists():
        raise NotFound(f"{mock_path.parent.name!r} has no mock report; add the dataset again to build one")
    return json.loads(path.read_text())


def approve(store, dataset: str, actor: str, reason: str = "") -> Dataset:
    """Record the owner's approval of the current mock, with its audit row, in one transaction."""
    with store.transaction() as tx:
        found = dataset_rows.meta_json(tx, dataset)
        if found is None:
            raise NotFound(f"this domain has no dataset {dataset!r}")
        meta = Dataset.model_validate_json(found)
        if meta.mock is None:
            raise Conflict(f"dataset {dataset!r} has no mock report to approve; add the dataset again")
        meta.mock = {**meta.mock, "status": "approved"}  # who approved is in the audit log, not shown to analysts
        dataset_rows.set_meta_json(tx, dataset, meta.model_dump_json())
        audit.append(tx, actor, "mock", dataset, {"approved": True, "report_sha256": meta.mock["report_sha256"],
                                                  "tier": meta.mock["tier"], "reason": reason})
    return meta


def render(report: dict[str, Any], state: dict[str, Any] | None = None) -> str:
    """The report as the owner reads it on the command line."""
    u, r = report["utility"], report["risk"]
    lines = [f"mock: tier {report['tier']}, {report['rows']} rows"
             + (f", {state.get('status')}" if state else "")]
    lines.append(f"  utility: mean marginal distance {u['mean_marginal_distance']}, correlation error "
                 f"{u['correlation_error']['mean']} (max {u['correlation_error']['max']}), pMSE {u['pmse']} "
                 f"(ratio {u['pmse_ratio']}; ~1 = indistinguishable from real)")
    worst = sorted(u["marginal_distance"].items(), key=lambda kv: -kv[1])[:5]
    if worst:
        lines.append("  least faithful columns: " + ", ".join(f"{c} {d}" for c, d in worst))
    lines.append(f"  risk: exact matches {r['exact_match_rate']:.1%} of rows (rare records {r['rare_match_rate']:.1%}), "
                 f"rare-category values {r['rare_category_exposure']['rare_level_values']}, "
                 f"values outside the public range {r['rare_category_exposure']['values_outside_public_range']}")
    if r.get("closer_to_real") is not None:
        lines.append(f"  closer to its own rows than to a holdout: {r['closer_to_real']:.2f} (0.5 = not memorised); "
                     f"DCR mock {r['dcr_mock']} vs holdout {r['dcr_holdout']}")
    else:
        lines.append(f"  holdout comparison: {r.get('dcr_note', 'not measured')}")
    return "\n".join(lines)

