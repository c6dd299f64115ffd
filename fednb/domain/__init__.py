"""The data owner's side: a domain folder, its policy, store, runner, sandbox and HTTP API.

Laid out by the stage a request passes through: ``api`` (the door), ``review`` (policy and
decisions), ``run`` (jobs, built-ins, the sandbox), ``release`` (disclosure control, privacy,
secure aggregation), ``audit`` (the log and the report); ``data`` and ``store`` serve them all.

Importing this package is cheap: the sandbox's fork server imports ``fednb.domain.run.sandbox``
and must not pull in the store, the policy or the HTTP stack.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Domain"]


def __getattr__(name: str) -> Any:
    if name == "Domain":
        from fednb.domain.domain import Domain

        return Domain
    raise AttributeError(f"module 'fednb.domain' has no attribute {name!r}")
