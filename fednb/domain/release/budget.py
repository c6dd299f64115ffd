"""The privacy budget: every noisy release spends epsilon (and delta) of one analyst on one dataset.

Spends add up by basic composition (Dwork & Roth 2014, Thm 3.16): k releases that are (εᵢ, δᵢ)-DP
are together (Σεᵢ, Σδᵢ)-DP. A training request is one release spread over its rounds: each round
spends what the accountant's total grew by (see :mod:`fednb.domain.release.dp_training`).

:func:`spend` runs inside the transaction that releases the result (a serialized write transaction
of :class:`fednb.domain.store.database.Store`, on SQLite and PostgreSQL alike), so the check and the
debit cannot interleave with another release, in this process or another: concurrent requests can
never overspend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fednb.domain.audit import log as audit
from fednb.domain.review.policy import Policy
from fednb.domain.store import budget as ledger_rows
from fednb.locale import N_

SLACK = 1e-9  # ten spends of 0.1 add up to 0.9999999999999999 in floating point


@dataclass(frozen=True)
class Budget:
    analyst: str
    dataset: str
    epsilon: float
    delta: float
    spent_epsilon: float
    spent_delta: float
    releases: int

    @property
    def remaining_epsilon(self) -> float:
        left = self.epsilon - self.spent_epsilon
        return left if left > SLACK else 0.0

    @property
    def remaining_delta(self) -> float:
        left = self.delta - self.spent_delta
        return left if left > SLACK * self.delta else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"analyst": self.analyst, "dataset": self.dataset, "epsilon": self.epsilon, "delta": self.delta,
                "spent_epsilon": self.spent_epsilon, "spent_delta": self.spent_delta,
                "remaining_epsilon": self.remaining_epsilon, "remaining_delta": self.remaining_delta,
                "releases": self.releases}


def status(conn: Any, policy: Policy, analyst: str, dataset: str) -> Budget:
    allowance = policy.privacy.allowance(analyst, dataset)
    eps, delta, n = ledger_rows.spent(conn, analyst, dataset)
    return Budget(analyst, dataset, allowance.epsilon, allowance.delta, eps, delta, n)


def spend(tx: Any, policy: Policy, *, analyst: str, dataset: str, request_id: str,
          job_id: int | None, epsilon: float, delta: float, mechanism: str) -> Budget:
    """Debit one release, or raise :class:`Blocked` (nothing debited) if it would overspend.

    Call inside the transaction that records the release; the audit row ``spend`` is written here.
    """
    before = status(tx, policy, analyst, dataset)
    if before.spent_epsilon + epsilon > before.epsilon + SLACK or before.spent_delta + delta > before.delta + SLACK:
        message = (N_("this release needs epsilon {epsilon:.4g} and delta {delta:.3g}, but your privacy budget "
                     "on {dataset!r} has {left:.4g} epsilon and {left_delta:.3g} delta left (of {total:g}); "
                     "ask for less epsilon, or ask the owner for more budget") if delta else
                   N_("this release needs epsilon {epsilon:.4g}, but your privacy budget on {dataset!r} has "
                     "{left:.4g} epsilon left (of {total:g}); ask for less epsilon, or ask the owner for more "
                     "budget"))
        from fednb.domain.release.disclosure import Blocked  # with numpy: `fednb domain budget` never needs it

        raise Blocked(message.format(epsilon=epsilon, delta=delta, dataset=dataset, left=before.remaining_epsilon,
                                     left_delta=before.remaining_delta, total=before.epsilon))
    ledger_rows.record(tx, analyst=analyst, dataset=dataset, request_id=request_id, job_id=job_id,
                       epsilon=epsilon, delta=delta, mechanism=mechanism)
    after = status(tx, policy, analyst, dataset)
    audit.append(tx, "domain", "spend", request_id, {
        "analyst": analyst, "dataset": dataset, "job": job_id, "epsilon": epsilon, "delta": delta,
        "mechanism": mechanism, "spent_epsilon": after.spent_epsilon, "spent_delta": after.spent_delta,
        "budget_epsilon": after.epsilon, "budget_delta": after.delta})
    return after


def ledger(conn: Any, *, analyst: str | None = None) -> list[dict[str, Any]]:
    """Spent totals per analyst and dataset (the owner's view)."""
    return ledger_rows.totals(conn, analyst=analyst)
