"""The OS-level sandbox that runs approved analyst code on private data.

A warm fork server ("zygote", exec'd with a clean environment, in its own net/mount/pid
namespaces) forks one child per job; the child drops to a per-job uid under rlimits, landlock and
seccomp before it runs the analyst's function, and only JSON comes back. See SANDBOX_RECIPE.md.

Importing this package is cheap and loads nothing: the zygote imports its own modules (zygote,
child, harness, the walls) and every job inherits exactly those, so the domain-side modules
(client, link, jobs, session, selftest, outcome) load only in the domain, on first use.
"""

from __future__ import annotations

from typing import Any

_LAZY = {"Sandbox": "client", "Session": "session", "JobOutcome": "spec", "JobSpec": "spec", "Limits": "spec"}

__all__ = ["JobOutcome", "JobSpec", "Limits", "Sandbox", "Session"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
