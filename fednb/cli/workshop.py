"""``fednb workshop ...``: a class's domains, served together."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fednb.cli.base import FednbGroup
from fednb.errors import FednbError


@click.group(cls=FednbGroup)
def workshop() -> None:
    """A class's domains: two hospitals and a lithium plant, served together (docs/workshop.md)."""


@workshop.command("serve")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 lets a class on the same network connect.")
@click.option("--port", default=8701, show_default=True, type=int,
              help="hospital-a's port; hospital-b and ylb-uyuni take the next two. 0 picks free ports.")
@click.option("--profile", "profile_name", default="workshop", show_default=True,
              help="Saved for you: the domains' URLs, your token and the folders, for the notebooks.")
def workshop_serve(path: Path, host: str, port: int, profile_name: str) -> None:
    """Create the workshop's domains in PATH (first time only) and serve them until Ctrl-C."""
    import signal
    import time

    from fednb.demo import workshop as ws

    servers = ws.serve(path, host=host, port=port, profile=profile_name)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a plain kill stops the domains in order
    try:
        for s in servers:
            click.echo(s.banner)
        click.echo(f"ready: {len(servers)} domains; notebooks connect with fednb.connect(profile={profile_name!r})")
        if host not in ("127.0.0.1", "localhost", "::1"):
            click.echo(f"students: fednb profile add {profile_name} http://THIS_MACHINE:PORT --token THEIR_TOKEN, "
                       "once per domain (docs/workshop.md)")
        while all(s.alive() for s in servers):
            time.sleep(1)
        down = [s.path.name for s in servers if not s.alive()]
        raise FednbError(f"domain(s) {', '.join(down)} stopped; see server.log in their folders")
    except KeyboardInterrupt:
        pass
    finally:
        for s in servers:
            s.stop()
