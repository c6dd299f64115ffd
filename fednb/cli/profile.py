"""``fednb profile ...``: the analyst's saved domains and tokens."""

from __future__ import annotations

import click

from fednb.cli.base import FednbGroup


@click.group(cls=FednbGroup)
def profile() -> None:
    """Saved connections for analysts: fednb.connect(profile=NAME) and the JupyterLab panel use them."""


@profile.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--token", required=True, help="Your token for this domain (kept in a file only you can read).")
def profile_add(name: str, url: str, token: str) -> None:
    """Add (or replace) domain URL in profile NAME."""
    from fednb.client import profile as profiles

    path = profiles.add_domain(name, url, token)
    click.echo(f"profile '{name}' now has {len(profiles.load(name))} domain(s) ({path})")


@profile.command("add-owner")
@click.argument("name")
@click.argument("location")
@click.option("--token", default=None, help="Your owner token, when LOCATION is a domain's URL.")
def profile_add_owner(name: str, location: str, token: str | None) -> None:
    """Add a domain you own to profile NAME: its folder, or its URL with --token (the review panel
    and `fednb domain approve --all-domains` act on these)."""
    from pathlib import Path

    from fednb.client import profile as profiles

    remote = location.startswith(("http://", "https://"))
    entry = {"url": location, "token": token} if remote else {"path": str(Path(location).expanduser().resolve())}
    if "url" in entry and not token:
        raise click.UsageError("a domain URL needs your owner token: --token TOKEN")
    kept = [e for e in profiles.load_owner(name) if e.get("url") != location.rstrip("/")
            and e.get("path") != entry.get("path")]
    path = profiles.save_owner(name, kept + [entry])
    click.echo(f"profile '{name}' now lists {len(kept) + 1} domain(s) you own ({path})")


@profile.command("list")
def profile_list() -> None:
    """Show saved profiles and their domains (tokens hidden)."""
    from fednb.client import profile as profiles

    saved = profiles.load_all()
    if not saved:
        click.echo("no profiles yet; add one with `fednb profile add NAME URL --token TOKEN`")
    for name, entry in saved.items():
        click.echo(f"{name}:")
        for d in entry.get("domains", []):
            click.echo(f"  {d['url']}  token {'set' if d.get('token') else 'missing'}")


@profile.command("remove")
@click.argument("name")
@click.argument("url", required=False)
def profile_remove(name: str, url: str | None) -> None:
    """Remove profile NAME, or only URL from it."""
    from fednb.client import profile as profiles

    profiles.remove(name, url)
    click.echo(f"removed {url + ' from ' if url else ''}profile '{name}'")
