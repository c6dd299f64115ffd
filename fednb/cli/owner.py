"""``fednb domain ...``: the owner's commands to create, fill, open up and serve a domain."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fednb.cli.base import FednbGroup, open_domain


@click.group(cls=FednbGroup)
def domain() -> None:
    """Run a data domain: create it, add datasets, invite analysts, serve, review, audit."""


@domain.command("init")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="The domain's name, as analysts will see it.")
@click.option("--description", default="", help="One line shown to analysts.")
@click.option("--store", default=None, metavar="URL",
              help="Keep the domain's state in this empty PostgreSQL database (postgresql://USER@HOST:PORT/DB) "
                   "instead of SQLite in the folder; needed to serve with --workers.")
def domain_init(path: Path, name: str, description: str, store: str | None) -> None:
    """Create a domain folder with its policy.toml and store."""
    from fednb.domain import Domain

    d = Domain.init(path, name, description, store=store)
    click.echo(f"created domain '{d.name}' in {d.path} (store: {d.store.describe()})\n"
               f"next: edit {d.path / 'policy.toml'}, then `fednb domain add-dataset {path} FILE --name NAME`")


@domain.command("add-dataset")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="The dataset's name (with --sql or --spark, FILE is the name).")
@click.option("--description", default="")
@click.option("--sql", "sql_url", default=None, metavar="URL",
              help="Leave the rows in PostgreSQL: postgresql://READONLY_USER:PASSWORD@HOST/DB (kept in the "
                   "domain folder, mode 0600; never sent anywhere).")
@click.option("--spark", "spark_url", default=None, metavar="MASTER",
              help="Leave the rows in Spark: local[N], spark://HOST:PORT or sc://HOST:PORT.")
@click.option("--table", default=None, help="With --sql or --spark: the table (SCHEMA.TABLE), or for Spark "
                                             "a Parquet folder as parquet.`/path`.")
def domain_add_dataset(path: Path, file: Path, name: str | None, description: str, sql_url: str | None,
                       spark_url: str | None, table: str | None) -> None:
    """Register a CSV or Parquet file (or a table that stays in PostgreSQL or Spark) and generate its mock."""
    d = open_domain(path)
    if sql_url or spark_url:
        from fednb.domain.data import sources

        if (sql_url and spark_url) or not table:
            raise click.UsageError("give one of --sql URL or --spark MASTER, and --table TABLE")
        meta = sources.add_to_domain(d, sql_url or spark_url, table, name or str(file), description)
    else:
        if not name:
            raise click.UsageError("--name NAME is required for a file")
        if file.suffix.lower() == ".csv" and file.is_file():
            from fednb.domain.data import csv_dialect

            click.echo(f"reading {file.name} as {csv_dialect.detect(file).describe()}")
        meta = d.add_dataset(file, name, description)
    cols = ", ".join(f"{c.name} ({c.kind})" for c in meta.columns)
    click.echo(f"dataset '{meta.name}': about {meta.rows} rows; columns: {cols}; mock written")
    _echo_mock_report(d, meta.name)


def _echo_mock_report(d, name: str) -> None:
    from fednb.domain.data import mock_review

    meta = d.dataset(name)
    click.echo(mock_review.render(d.mock_report(name), meta.mock))
    why = mock_review.refusal(meta.mock, d.policy, name)
    click.echo(f"  analysts: {why}" if why else "  analysts: served")
    if meta.mock and meta.mock.get("status") != "approved":
        click.echo(f"  approve it with `fednb domain approve-mock {d.path} {name}`")


@domain.command("mock-report")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("dataset")
def domain_mock_report(path: Path, dataset: str) -> None:
    """How useful and how risky a dataset's mock is, and whether analysts are served it."""
    _echo_mock_report(open_domain(path), dataset)


@domain.command("approve-mock")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("dataset")
@click.option("--reason", default="", help="Recorded in the audit log.")
def domain_approve_mock(path: Path, dataset: str, reason: str) -> None:
    """Serve a dataset's mock to analysts (recorded in the audit log)."""
    d = open_domain(path)
    d.approve_mock(dataset, reason)
    click.echo(f"mock of '{dataset}' approved")
    _echo_mock_report(d, dataset)


@domain.command("datasets")
@click.argument("path", type=click.Path(path_type=Path))
def domain_datasets(path: Path) -> None:
    """List the domain's datasets."""
    for d in open_domain(path).datasets():
        click.echo(f"{d.name:20} ~{d.rows:>8} rows  {len(d.columns):>3} columns  {d.description}")


@domain.command("set-bounds")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("dataset")
@click.argument("column")
@click.argument("lo", type=float)
@click.argument("hi", type=float)
def domain_set_bounds(path: Path, dataset: str, column: str, lo: float, hi: float) -> None:
    """Clamp COLUMN to [LO, HI] in noisy sums, means and variances (public; choose from the column's
    meaning, never from its values)."""
    open_domain(path).set_bounds(dataset, column, lo, hi)
    click.echo(f"{dataset}.{column}: noisy releases clamp values to [{lo:g}, {hi:g}]; analysts see these bounds")


@domain.command("budget")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def domain_budget(path: Path, as_json: bool) -> None:
    """Privacy budget spent by each analyst on each dataset, and what is left."""
    rows = open_domain(path).budgets()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no noisy release yet: every budget is whole")
    for r in rows:
        click.echo(f"{r['analyst']:16} {r['dataset']:16} epsilon {r['epsilon']:.4g} of {r['budget_epsilon']:g}"
                   f"  delta {r['delta']:.3g} of {r['budget_delta']:g}  ({r['releases']} releases)")


@domain.command("invite")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("name")
@click.option("--owner", is_flag=True, help="An owner token (review and audit over HTTP), not an analyst's.")
@click.option("--token", default=None, help="Register this token instead of making one (same token on several domains).")
def domain_invite(path: Path, name: str, owner: bool, token: str | None) -> None:
    """Print a new token for NAME (shown once; only its hash is stored)."""
    token = open_domain(path).invite(name, role="owner" if owner else "analyst", token=token)
    click.echo(token)
    click.echo(f"(token for {'owner' if owner else 'analyst'} '{name}': shown once, give it to them privately; "
               f"revoke with `fednb domain revoke {path} {name}`)", err=True)


@domain.command("invite-bulk")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--count", type=click.IntRange(1, 10_000), default=None,
              help="Invite this many people, PREFIX01 to PREFIXnn, each with a new token.")
@click.option("--prefix", default="student", show_default=True, help="With --count: the start of each name.")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path), default=None,
              help="With --count: write name,token here (a new file, readable by you only).")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Register the names and tokens of this CSV (name,token), e.g. one written on another domain.")
def domain_invite_bulk(path: Path, count: int | None, prefix: str, csv_out: Path | None,
                       token_file: Path | None) -> None:
    """Invite a class at once: new tokens to a CSV, or the same tokens from one (all or none)."""
    if (count is None) == (token_file is None):
        raise click.UsageError("give either --count N --csv FILE (new tokens) or --token-file FILE (the same tokens)")
    if count is not None:
        if csv_out is None:
            raise click.UsageError("--count needs --csv FILE: the tokens are shown only once")
        if csv_out.exists():
            raise click.UsageError(f"{csv_out} exists; it may hold tokens: choose a new file")
        width = max(2, len(str(count)))
        wanted: dict[str, str | None] = {f"{prefix}{i:0{width}d}": None for i in range(1, count + 1)}
    else:
        wanted = _read_tokens(token_file)
    made = open_domain(path).invite_many(wanted)
    if count is not None:
        _write_tokens(csv_out, made)
        click.echo(f"invited {len(made)} analysts ({next(iter(made))} to {list(made)[-1]}); tokens in {csv_out}")
        click.echo(f"the same tokens on another domain: `fednb domain invite-bulk OTHER_DIR --token-file {csv_out}`")
    else:
        click.echo(f"invited {len(made)} analysts with the tokens of {token_file}")


def _read_tokens(file: Path) -> dict[str, str]:
    import csv

    with file.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"name", "token"} <= set(rows[0]):
        raise click.UsageError(f"{file} needs a header line 'name,token' and one row per person")
    tokens: dict[str, str] = {}
    for i, row in enumerate(rows, 2):
        name, token = (row.get("name") or "").strip(), (row.get("token") or "").strip()
        if not name or not token:
            raise click.UsageError(f"{file}, line {i}: a name and a token are needed")
        if name in tokens:
            raise click.UsageError(f"{file}, line {i}: {name!r} appears twice")
        tokens[name] = token
    return tokens


def _write_tokens(file: Path, tokens: dict[str, str]) -> None:
    import csv
    import os

    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "token"])
        writer.writerows(tokens.items())


@domain.command("revoke")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("name")
def domain_revoke(path: Path, name: str) -> None:
    """Revoke every token of NAME."""
    n = open_domain(path).revoke(name)
    click.echo(f"revoked {n} token(s) of '{name}'")


@domain.command("trust")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("roster", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--entry", "entry_url", default=None, metavar="URL",
              help="Print this domain's own roster entry (analysts reach it at URL) to send to the other owners.")
def domain_trust(path: Path, roster: Path | None, entry_url: str | None) -> None:
    """Pin the peer domains listed in ROSTER for secure aggregation (replacing those pinned before).

    This domain then masks only toward keys signed by these peers. Compare every fingerprint with
    its owner out of band (phone, meeting) before you pin it."""
    from fednb.domain.release import trusted_peers

    d = open_domain(path)
    try:
        if entry_url is not None:
            click.echo(trusted_peers.roster_entry(d.name, entry_url, d.identity.public_key), nl=False)
            return
        if roster is None:
            raise click.UsageError("give a ROSTER file to pin, or --entry URL to print this domain's own entry")
        listed = trusted_peers.read_roster(roster)
        peers = trusted_peers.pin(d.store, d.identity.public_key, listed)
        if len(peers) == len(listed):
            click.secho(f"note: {d.name} itself is not in {roster}: the other owners cannot pin it from this roster",
                        fg="yellow", err=True)
        click.echo(f"{d.name} ({d.identity.fingerprint}) masks only toward these {len(peers)} pinned peers:")
        for p in peers:
            click.echo(f"  {p.name:20} {p.fingerprint}  {p.url}")
    finally:
        d.close()


@domain.command("serve")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Keep 127.0.0.1 unless analysts connect from other machines.")
@click.option("--port", default=8701, show_default=True, type=int, help="0 picks a free port.")
@click.option("--certfile", type=click.Path(exists=True), default=None, help="TLS certificate (PEM).")
@click.option("--keyfile", type=click.Path(exists=True), default=None, help="TLS private key (PEM).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes (each with its own job runner); more than 1 needs a PostgreSQL store.")
def domain_serve(path: Path, host: str, port: int, certfile: str | None, keyfile: str | None, workers: int) -> None:
    """Serve the domain's HTTP API, run approved jobs."""
    if bool(certfile) != bool(keyfile):
        raise click.UsageError("--certfile and --keyfile go together")
    if workers > 1:  # several processes: a PostgreSQL store only
        from fednb.domain.worker_processes import serve_workers

        serve_workers(path, host, port, workers, certfile=certfile, keyfile=keyfile)
        return
    from fednb.domain.server import serve

    serve(path, host, port, certfile=certfile, keyfile=keyfile)
