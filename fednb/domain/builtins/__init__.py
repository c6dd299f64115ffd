"""Built-in aggregates, one module per family; each registers itself in :mod:`.registry`."""

from fednb.domain.builtins import stats  # noqa: F401  (registers the descriptive built-ins)
from fednb.domain.builtins.registry import REGISTRY, Context, compute, select, validate_args

__all__ = ["REGISTRY", "Context", "compute", "select", "validate_args"]
