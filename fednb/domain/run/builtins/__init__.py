"""Built-in aggregates, one module per family; each registers itself in :mod:`.registry`."""

from fednb.domain.run.builtins import cox_sql, glm, stats, survival, survival_sql  # noqa: F401  (importing a module registers its built-ins)
from fednb.domain.run.builtins.registry import (
                                            REGISTRY,
                                            Context,
                                            compute,
                                            iterative,
                                            select,
                                            validate_args,
                                            validate_round_inputs,
)

__all__ = ["REGISTRY", "Context", "compute", "iterative", "select", "validate_args", "validate_round_inputs"]
