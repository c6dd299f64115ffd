"""The names a domain accepts (datasets, analysts, federations) and the actor an owner's command is
logged under."""

from __future__ import annotations

import getpass
import re

from fednb.errors import InvalidInput
from fednb.models import NAME_PATTERN


def check_name(what: str, name: str) -> str:
    if not re.match(NAME_PATTERN, name or ""):
        raise InvalidInput(f"{what} {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def owner_actor() -> str:
    """Who ran an owner command, as the audit log names them."""
    try:
        return f"owner:{getpass.getuser()}"
    except Exception:  # no login name in some containers
        return "owner"
