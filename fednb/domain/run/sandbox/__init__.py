"""The OS-level sandbox that runs approved analyst code on private data.

A warm fork server ("zygote", exec'd with a clean environment, in its own net/mount/pid
namespaces) forks one child per job; the child drops to a per-job uid under rlimits, landlock and
seccomp before it runs the analyst's function, and only JSON comes back. See SANDBOX_RECIPE.md.
"""

from fednb.domain.run.sandbox.client import Sandbox
from fednb.domain.run.sandbox.session import Session
from fednb.domain.run.sandbox.spec import JobOutcome, JobSpec, Limits

__all__ = ["JobOutcome", "JobSpec", "Limits", "Sandbox", "Session"]
