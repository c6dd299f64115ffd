"""The objects both sides agree on: datasets, requests, results, audit entries.

These pydantic models are the wire format of the domain API (and its OpenAPI schema) and the
analyst's view of it. Keep them free of behaviour.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RequestKind = Literal["builtin", "function", "training"]
RequestStatus = Literal["pending", "approved", "denied", "running", "done", "failed", "blocked"]
FINAL_STATUSES: frozenset[str] = frozenset({"denied", "done", "failed", "blocked"})
STATUSES = ("pending", "approved", "running", "done", "denied", "blocked", "failed")  # a request's life, in order
ROUND_FINAL: frozenset[str] = frozenset({"done", "failed", "blocked"})
BUILTINS: tuple[str, ...] = ("count", "sum", "mean", "variance", "histogram", "quantiles", "crosstab", "glm",
                               "kaplan_meier", "logrank", "coxph")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


def canonical_json(obj: Any) -> str:
    """One spelling per value: sorted keys, no spaces. Hashes are taken over this."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def code_hash(kind: str, name: str, code: str | None, args: dict, limits: dict | None = None) -> str:
    """SHA-256 binding an approval to the exact code, static arguments and limits (e.g. a training
    request's round budget) of a request."""
    body: dict[str, Any] = {"kind": kind, "name": name, "code": code or "", "args": args}
    limits = {k: v for k, v in (limits or {}).items() if v is not None}
    if limits:
        body["limits"] = limits
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Column(_Model):
    name: str
    dtype: str
    kind: Literal["numeric", "integer", "boolean", "categorical", "datetime", "text"]
    levels: list[Any] | None = Field(None, description="Categories seen at least min_cell_count times.")
    range: list[float] | None = Field(None, description="Approximate public range (tails trimmed).")
    bounds: list[float] | None = Field(None, description="Clamping bounds [lo, hi] the owner set for noisy "
                                                         "(differentially private) sums, means and variances.")
    missing: bool = False
    unit: str | None = None


class Dataset(_Model):
    name: str
    description: str = ""
    rows: int = Field(description="Row count, rounded to the domain's policy.")
    columns: list[Column]
    has_mock: bool = True
    notes: str = ""
    mock: dict[str, Any] | None = Field(None, description="The mock's tier, review status and summary "
                                        "utility and risk figures (fednb.domain.data.mock_report).")


class Isolation(BaseModel):
    model_config = ConfigDict(extra="allow")
    level: Literal["strong", "standard", "minimal", "none"]


class DomainInfo(_Model):
    name: str
    version: str
    api: str = "v1"
    isolation: dict[str, Any]
    description: str = ""


class Session(_Model):
    domain: str
    analyst: str
    role: Literal["analyst", "owner"]


class Limits(_Model):
    max_runtime_s: float | None = Field(None, gt=0, le=86400)
    max_rounds: int | None = Field(None, ge=1, le=100_000)
    columns: list[str] | None = Field(None, min_length=1, max_length=10_000, description=(
        "The dataset columns custom code reads (function and training requests): the job's frame holds "
        "only these, read from the file column by column. Part of the approved hash; none: every column."))


class RequestIn(_Model):
    """What an analyst submits."""

    dataset: str = Field(pattern=NAME_PATTERN)
    kind: RequestKind
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
                      description="The built-in's name, or the function's name in `code`.")
    code: str | None = Field(None, max_length=100_000)
    args: dict[str, Any] = Field(default_factory=dict)
    description: str = Field("", max_length=5_000)
    limits: Limits = Field(default_factory=Limits)
    idempotency_key: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")


class Request(_Model):
    """A request as the domain records it."""

    id: str
    analyst: str
    dataset: str
    kind: RequestKind
    name: str
    code: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    code_hash: str
    description: str = ""
    limits: Limits = Field(default_factory=Limits)
    status: RequestStatus
    reason: str | None = Field(None, description="Deny, block or failure reason; or the approval note.")
    decided_by: str | None = None
    created_at: float
    decided_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    disclosure: dict[str, Any] | None = None
    receipts: list[dict[str, Any]] = Field(default_factory=list, description=(
        "The domain's signed receipt (Ed25519) of the release, or of the latest round's: code and salted "
        "result SHA-256, disclosure, privacy spent, audit entry, Merkle log head. `fednb verify` checks it."))

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


class Round(_Model):
    """One round of a request that runs in rounds (training: its weights are fetched separately)."""

    request_id: str
    round: int
    status: Literal["queued", "running", "done", "failed", "blocked"]
    reason: str | None = None
    n: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    eval: dict[str, Any] | None = None
    train_seconds: float | None = Field(None, description="Time the domain's training function took.")
    weights_sha256: str | None = None
    result: Any = Field(None, description="What an iterative built-in released this round.")
    dp: dict[str, Any] | None = Field(None, description="DP-SGD settings the domain used (noise multiplier...).")


class Decision(_Model):
    reason: str = Field("", max_length=5_000)


class AuditEntry(_Model):
    seq: int
    time: str
    actor: str
    action: str
    object_id: str | None
    payload: dict[str, Any]
    payload_hash: str
    prev_hash: str
    hash: str


class ErrorBody(_Model):
    error: str
    detail: Any = None
