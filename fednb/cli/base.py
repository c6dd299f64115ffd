"""What every ``fednb`` command shares: readable errors instead of tracebacks, opening a domain."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from fednb.errors import FednbError


class FednbGroup(click.Group):
    """Turns fednb errors into one readable line and exit status 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FednbError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)
        except ModuleNotFoundError as exc:  # an owner's command on an analyst's install, say
            from fednb.extras import install_hint

            hint = install_hint(exc.name)
            if hint is None:
                raise
            click.secho(f"error: {hint}", fg="red", err=True)
            sys.exit(2)


def open_domain(path: Path):
    from fednb.domain import Domain

    return Domain(path)


def when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else ""
