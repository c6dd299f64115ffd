"""The shape of a training request, checked when it is submitted, before any owner reviews it.

The code itself is checked like any function's; here: the model class and evaluation function it
names exist, the arguments are the right types, the differential-privacy settings fit the policy,
and the round budget is stated and within the policy's limit.
"""

from __future__ import annotations

from fednb.domain.review.policy import Policy
from fednb.errors import InvalidInput
from fednb.locale import N_


def check_request(args: dict, code: str, limits_max_rounds: int | None, policy: Policy) -> None:
    """Shape of a training request at submission (the code itself is checked like any function)."""
    import ast

    model = args.get("model")
    if not isinstance(model, str):
        raise InvalidInput("a training request names its model class in args['model']")
    tree = ast.parse(code)
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if model not in classes:
        raise InvalidInput(f"the code defines no class {model!r} for the model")
    if args.get("evaluate") and args["evaluate"] not in functions:
        raise InvalidInput(f"the code defines no function {args['evaluate']!r} for evaluation")
    for key in ("model_args", "config"):
        if not isinstance(args.get(key, {}), dict):
            raise InvalidInput(f"args[{key!r}] must be a dict")
    if not isinstance(args.get("secure_aggregation", False), bool):
        raise InvalidInput("args['secure_aggregation'] must be true or false")
    from fednb.domain.release import dp_training

    dp_training.check(args, policy)
    if not policy.learning.enabled:
        raise InvalidInput(N_("this domain does not accept training requests (policy: learning.enabled = false)"))
    if limits_max_rounds is None:
        raise InvalidInput(N_("a training request states its round budget (limits.max_rounds)"))
    if limits_max_rounds > policy.learning.max_rounds:
        raise InvalidInput(N_("this domain allows at most {rounds} rounds per request").format(
            rounds=policy.learning.max_rounds))
