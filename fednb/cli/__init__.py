"""The ``fednb`` command: ``fednb demo``, the owner's ``fednb domain ...``, ``fednb workshop``,
``fednb profile`` and ``fednb verify``; one module per group of commands."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fednb._version import __version__
from fednb.cli import profile, review, transparency, workshop  # noqa: F401  (review adds to domain)
from fednb.cli.base import FednbGroup
from fednb.cli.owner import domain


@click.group(cls=FednbGroup)
@click.version_option(__version__, prog_name="fednb")
def main() -> None:
    """fednb: federated data science from Jupyter; the data stays on its owners' servers."""


@main.command()
@click.option("--dir", "workdir", type=click.Path(path_type=Path), default=None,
              help="Where to keep the demo domains. With --lab also your copy of the notebooks: default "
                   "~/fednb-demo, kept. Without --lab: default a temporary folder, removed afterwards.")
@click.option("--serve", is_flag=True, help="Keep the domains running after the tour, until Ctrl-C.")
@click.option("--lab", is_flag=True,
              help="Instead of the tour in the terminal: serve the domains and open JupyterLab on the tour notebook.")
@click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True,
              help="With --lab: the tour notebook's language.")
@click.option("--port", default=8888, show_default=True, type=int,
              help="With --lab: JupyterLab's port (the next free one when taken; 0: any free port).")
@click.option("--no-browser", is_flag=True, help="With --lab: do not open a browser.")
def demo(workdir: Path | None, serve: bool, lab: bool, lang: str, port: int, no_browser: bool) -> None:
    """Start two hospitals and a lithium plant on this machine and run the tour (or, with --lab,
    JupyterLab on the tour notebook)."""
    if lab:
        from fednb.demo.lab import run_lab

        sys.exit(run_lab(workdir, lang=lang, port=port, open_browser=not no_browser))
    from fednb.demo.tour import run_demo

    sys.exit(run_demo(workdir=workdir, serve=serve))


main.add_command(domain)
main.add_command(workshop.workshop)
main.add_command(profile.profile)
transparency.register(main, domain)

if __name__ == "__main__":
    main()
