"""The commands that make a domain checkable by anyone: ``fednb domain info``, ``fednb domain publish``
and ``fednb verify`` (which needs only files, never the domain)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from fednb.errors import FednbError, InvalidInput


@click.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
def domain_info(path: Path, as_json: bool) -> None:
    """Name, key fingerprint (compare it out of band before pinning it), isolation, datasets, log head."""
    from fednb.domain import Domain
    from fednb.domain.audit import merkle, public_log, sovereignty

    d = Domain(path)
    server = sovereignty.server_state(d.path)
    size, root = public_log.head(d.store.connect())
    if size == 0 and d.audit_entries(limit=1):  # a log made before the tree: build it now, as publish would
        size, root = len(d.audit_entries()), merkle.root(public_log.leaves(d.store.connect())).hex()
    info = {"name": d.name, "fingerprint": d.identity.fingerprint,
            "isolation": (server.get("isolation") or {}).get("level", "unknown (not served yet)"),
            "datasets": [{"name": ds.name, "rows": ds.rows, "columns": len(ds.columns)} for ds in d.datasets()],
            "log": {"entries": size, "root_hash": root}}
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"domain       {info['name']}\nfingerprint  {info['fingerprint']}  (Ed25519)\n"
               f"isolation    {info['isolation']}\nlog          {size} entries, Merkle root {root}")
    for ds in info["datasets"]:
        click.echo(f"dataset      {ds['name']}: ~{ds['rows']} rows, {ds['columns']} columns")


@click.command("publish")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
def domain_publish(path: Path, out: Path) -> None:
    """Write the public transparency log to OUT/ (JSON + HTML in English and Spanish) for anyone to mirror."""
    from fednb.domain import Domain
    from fednb.domain.audit.publish import export

    try:
        published = export(Domain(path), out)
    except OSError as exc:
        raise FednbError(f"cannot write the export to {out}: {exc.strerror}") from None
    sth = published["sth"]
    click.echo(f"published {sth['body']['tree_size']} entries to {out}/ (index.html, index.es.html), "
               f"Merkle root {sth['body']['root_hash']}\ncheck it with: fednb verify --log {out} --pin {sth['fingerprint']}")


def _pins(values: tuple[str, ...]) -> dict[str, str]:
    pins = {}
    for value in values:
        name, sep, fingerprint = value.rpartition("=") if "=" in value.split("SHA256:")[0] else ("", "", value)
        if not fingerprint.startswith("SHA256:"):
            raise InvalidInput(f"--pin {value!r}: give [DOMAIN=]SHA256:... as `fednb domain info` prints it")
        pins[name or "*"] = fingerprint
    return pins


@click.command("verify")
@click.argument("result", required=False, type=click.Path(path_type=Path))
@click.option("--log", "log_dir", type=click.Path(path_type=Path), default=None,
              help="A folder written by `fednb domain publish`: check its signed head, entries, proofs.")
@click.option("--head", "heads", multiple=True, type=click.Path(path_type=Path),
              help="With --log: an earlier sth.json you kept (or its export folder); the log must extend it (repeatable).")
@click.option("--pin", "pins", multiple=True,
              help="The domain key you expect, [DOMAIN=]SHA256:... (repeatable).")
def verify(result: Path | None, log_dir: Path | None, heads: tuple[Path, ...], pins: tuple[str, ...]) -> None:
    """Check offline a saved RESULT.json's signed receipts, and/or a published log (--log OUT/).

    Exit status 0: everything holds; 1: something does not (each problem is printed); 2: bad input."""
    from fednb.domain.audit.verify import PublishedLog, _load, check_results

    if result is None and log_dir is None:
        raise InvalidInput("give a RESULT.json to check, --log OUT/ to check a published log, or both")
    pinned = _pins(pins)
    held: list[str] = []
    problems: list[str] = []
    log = None
    try:
        if log_dir is not None:
            log = PublishedLog(log_dir)
            problems += log.check(pinned.get(log.sth["body"].get("domain"), pinned.get("*")))
            for head in heads:
                problems += log.check_head(_load(head / "sth.json" if head.is_dir() else head), where=str(head))
            if not problems:
                held.append(f"log {log_dir}: {log.size} entries, root {log.root.hex()}, signed by {log.fingerprint}; "
                            f"{len(log.receipts)} release receipt(s) proven in it"
                            + (f"; extends {len(heads)} earlier head(s)" if heads else ""))
        if result is not None:
            ok, wrong = check_results(_load(result), pinned, log)
            held += ok
            problems += wrong
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"cannot check this: {exc}") from None
    for line in held:
        click.echo(f"ok: {line}")
    for line in problems:
        click.secho(f"FAILED: {line}", fg="red")
    sys.exit(1 if problems else 0)


def register(main: click.Group, domain: click.Group) -> None:
    domain.add_command(domain_info)
    domain.add_command(domain_publish)
    main.add_command(verify)
