"""The data owner's side: a domain folder, its policy, store, runner, sandbox and HTTP API."""

from fednb.domain.domain import Domain

__all__ = ["Domain"]
