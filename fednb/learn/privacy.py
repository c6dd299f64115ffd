"""Asking the domains for differentially private training: ``Trainer(..., dp=DPSGD(epsilon=3))``.

With ``dp``, each domain trains by DP-SGD (Abadi et al. 2016) with its own noise, clipping and
accountant (:mod:`fednb.domain.release.dp_training`): the Trainer's ``train_fn`` is then a *data function*
``fn(df, **config) -> (inputs, targets)`` and the domain's loop does the training. ``epsilon`` is
the target for the whole request (all its rounds) on each domain; every released round spends its
share of your budget there. Rounds release weights only (no per-domain metrics): evaluate centrally.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class DPSGD:
    """``epsilon`` (and ``delta``, default: the domain's delta budget) over the whole run;
    ``batch_size`` the expected Poisson batch; ``max_grad_norm`` the per-row clipping norm C;
    ``epochs`` local passes per round; ``lr``/``momentum`` of the SGD step; ``loss`` one of
    "cross_entropy", "bce_with_logits", "mse"."""

    epsilon: float
    delta: float | None = None
    batch_size: int = 64
    max_grad_norm: float = 1.0
    epochs: float = 1.0
    lr: float = 0.1
    momentum: float = 0.0
    loss: str = "cross_entropy"

    def args(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}
