"""Hygiene for the free-form JSON an analyst sends (a request's ``args``).

pydantic checks the shape of a submission, but ``args`` is free-form JSON that is hashed, stored in
SQLite, sent to the sandbox and echoed back. Python's JSON parser accepts what none of those can
handle: ``NaN`` and ``Infinity``, lone UTF-16 surrogates (``"\\ud800"``), and nesting deep enough to
overflow a serializer. Such input is refused here, at the door, with a message that names it,
instead of failing later as an internal error.
"""

from __future__ import annotations

import math
from typing import Any

from fednb.codec import MAX_DEPTH
from fednb.errors import InvalidInput
from fednb.locale import N_


def check_json(value: Any, what: str = "arguments") -> None:
    """Refuse non-finite numbers, text that is not valid Unicode, and nesting over ``MAX_DEPTH``."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidInput(N_("{what} are nested deeper than {depth} levels; send flatter values").format(
                what=what, depth=MAX_DEPTH))
        if isinstance(item, str):
            _check_text(item, what)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInput(N_("{what} must be JSON without NaN or infinity").format(what=what))
        elif isinstance(item, dict):
            for key, sub in item.items():
                _check_text(str(key), what)
                stack.append((sub, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((sub, depth + 1) for sub in item)


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(N_("{what} hold text that is not valid Unicode (a lone surrogate such as "
                             "'\\ud800'); send UTF-8 text").format(what=what)) from None
