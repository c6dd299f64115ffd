"""What one job produced, as the runner records it: released, blocked or failed, and what it costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fednb.domain.release import dp_training, noisy


@dataclass
class Outcome:
    """What a job produced: released (``result``), blocked or failed (``reason``)."""

    action: str  # "release" | "block" | "fail"
    result: Any = None
    reason: str | None = None
    disclosure: dict[str, Any] = field(default_factory=dict)
    blob: bytes | None = None
    spend: noisy.Spend | dp_training.RoundSpend | None = None  # privacy budget to debit in _finish
    evidence: dict[str, Any] = field(default_factory=dict)  # a built-in's Context.evidence, checked in _finish
    final: bool = False  # ends the request even if it runs in rounds (a built-in stopped by a limit)
