"""Differentially private training, as the domain runs and accounts for it.

A training request with ``args["dp"]`` is trained by DP-SGD (Abadi et al., "Deep Learning with
Differential Privacy", CCS 2016): Poisson-sampled batches, each row's gradient clipped to
``max_grad_norm``, Gaussian noise of standard deviation z·max_grad_norm on their sum. The analyst
states a target epsilon for the whole request; the domain, not the analyst, turns it into the noise
multiplier z with its accountant (:mod:`fednb.privacy.accountant`) for the approved round budget,
draws the noise seed, and sends these to the training harness as trusted inputs the analyst's
config cannot override. Each released round spends what the accountant's epsilon grew by, inside
the releasing transaction: ε(k + 1) − ε(k) after k released rounds (and the request's delta with
the first), so the rounds of a request add up to its accountant's total.

What is released per round is only the weights: no metrics, no evaluation, and the public rounded
row count as n, since exact losses and counts are not covered by the noise. The guarantee holds for
the code the owner approved: the harness runs fednb's DP-SGD loop on the analyst's model and data
function in the same sandboxed process, so a model written to bypass it is what the owner's review
is for (SECURITY.md says what DP-SGD does and does not cover).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fednb.domain.release.noisy import Spend
from fednb.domain.review.policy import Policy
from fednb.domain.store import jobs as job_rows
from fednb.errors import InvalidInput
from fednb.locale import N_

LOSSES = ("cross_entropy", "bce_with_logits", "mse")
_FIELDS = {"epsilon", "delta", "batch_size", "max_grad_norm", "epochs", "lr", "momentum", "loss"}


@dataclass(frozen=True)
class Plan:
    epsilon: float
    delta: float
    sample_rate: float
    steps_per_round: int
    rounds: int
    noise_multiplier: float
    max_grad_norm: float
    lr: float
    momentum: float
    loss: str
    expected_batch: float

    def epsilon_after(self, rounds: int) -> float:
        return _epsilon(self.sample_rate, self.noise_multiplier, rounds * self.steps_per_round, self.delta)

    def inputs(self) -> dict[str, Any]:
        """The trusted inputs of one round's DP-SGD, with a fresh secret noise seed."""
        return {"noise_multiplier": self.noise_multiplier, "max_grad_norm": self.max_grad_norm,
                "sample_rate": self.sample_rate, "steps": self.steps_per_round, "lr": self.lr,
                "momentum": self.momentum, "loss": self.loss, "expected_batch": self.expected_batch,
                "seed": secrets.randbits(63)}


@dataclass(frozen=True)
class RoundSpend:
    """A round's spend, resolved inside the releasing transaction from the rounds already released."""

    plan: Plan

    def resolve(self, tx, request_id: str) -> Spend:
        k = job_rows.rounds_done(tx, request_id)
        eps = self.plan.epsilon_after(k + 1) - self.plan.epsilon_after(k)
        return Spend(max(eps, 0.0), self.plan.delta if k == 0 else 0.0, "dp-sgd")


def check(args: dict[str, Any], policy: Policy) -> None:
    """At submission: DP settings are well-formed, and present where the policy requires them."""
    dp = args.get("dp")
    if dp is None:
        if policy.privacy.training == "dp":
            raise InvalidInput(N_("this domain trains only with differential privacy (policy: privacy.training = "
                                  "\"dp\"); pass dp=fednb.learn.DPSGD(epsilon=...) to the Trainer"))
        return
    if not isinstance(dp, dict) or not set(dp) <= _FIELDS:
        raise InvalidInput(f"args['dp'] takes {sorted(_FIELDS)}")
    for key in ("epsilon", "max_grad_norm", "lr", "epochs", "batch_size"):
        if not isinstance(dp.get(key), (int, float)) or not 0 < dp[key] < 1e6:
            raise InvalidInput(f"dp {key} must be a positive number")
    if not 0 <= dp.get("momentum", 0) < 1:
        raise InvalidInput("dp momentum must be in [0, 1)")
    if dp.get("loss", "cross_entropy") not in LOSSES:
        raise InvalidInput(f"dp loss must be one of {list(LOSSES)}")
    delta = dp.get("delta")
    if delta is not None and not (isinstance(delta, float) and 0 < delta < 1):
        raise InvalidInput("dp delta must be a number between 0 and 1")
    if policy.privacy.epsilon <= 0 and not policy.privacy.budgets:
        raise InvalidInput(N_("this domain gives no privacy budget, so it cannot train with differential privacy"))


def plan(args: dict[str, Any], rounds: int, public_rows: int, policy: Policy, analyst: str, dataset: str) -> Plan:
    dp = args["dp"]
    allowance = policy.privacy.allowance(analyst, dataset)
    delta = float(dp.get("delta") or allowance.delta)
    if not 0 < delta < 1:
        raise InvalidInput(N_("DP training needs a delta budget above 0 on this domain"))
    q = min(1.0, float(dp["batch_size"]) / max(public_rows, 1))
    steps = max(1, math.ceil(float(dp["epochs"]) / q))
    z = _noise_multiplier(float(dp["epsilon"]), q, steps * rounds, delta)
    return Plan(float(dp["epsilon"]), delta, q, steps, rounds, z, float(dp["max_grad_norm"]), float(dp["lr"]),
                float(dp.get("momentum", 0.0)), dp.get("loss", "cross_entropy"), q * public_rows)


@lru_cache(maxsize=256)
def _noise_multiplier(epsilon: float, q: float, steps: int, delta: float) -> float:
    from fednb.privacy.accountant import noise_multiplier

    return noise_multiplier(epsilon, q, steps, delta)


@lru_cache(maxsize=4096)
def _epsilon(q: float, z: float, steps: int, delta: float) -> float:
    from fednb.privacy.accountant import epsilon

    return epsilon(q, z, steps, delta)
