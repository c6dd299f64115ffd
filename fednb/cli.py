"""The ``fednb`` command: ``fednb demo`` and the owner's ``fednb domain ...`` commands."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click

from fednb._version import __version__
from fednb.errors import FednbError


class _Group(click.Group):
    """Turns fednb errors into one readable line and exit status 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FednbError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="fednb")
def main() -> None:
    """fednb: federated data science from Jupyter; the data stays on its owners' servers."""


@main.command()
@click.option("--dir", "workdir", type=click.Path(path_type=Path), default=None,
              help="Where to create the demo domains (default: a temporary folder, removed afterwards).")
@click.option("--serve", is_flag=True, help="Keep the domains running after the tour, until Ctrl-C.")
@click.option("--lab", is_flag=True,
              help="Instead of the tour in the terminal: serve the domains and open JupyterLab on the tour notebook.")
@click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True,
              help="With --lab: the tour notebook's language.")
@click.option("--port", default=8888, show_default=True, type=int, help="With --lab: JupyterLab's port.")
@click.option("--no-browser", is_flag=True, help="With --lab: do not open a browser.")
def demo(workdir: Path | None, serve: bool, lab: bool, lang: str, port: int, no_browser: bool) -> None:
    """Start two hospitals and a lithium plant on this machine and run the tour (or, with --lab,
    JupyterLab on the tour notebook)."""
    if lab:
        from fednb.demo.lab import run_lab

        sys.exit(run_lab(workdir, lang=lang, port=port, open_browser=not no_browser))
    from fednb.demo.tour import run_demo

    sys.exit(run_demo(workdir=workdir, serve=serve))


@main.group(cls=_Group)
def domain() -> None:
    """Run a data domain: create it, add datasets, invite analysts, serve, review, audit."""


def _open(path: Path):
    from fednb.domain import Domain

    return Domain(path)


@domain.command("init")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="The domain's name, as analysts will see it.")
@click.option("--description", default="", help="One line shown to analysts.")
def domain_init(path: Path, name: str, description: str) -> None:
    """Create a domain folder with its policy.toml and store."""
    from fednb.domain import Domain

    d = Domain.init(path, name, description)
    click.echo(f"created domain '{d.name}' in {d.path}\n"
               f"next: edit {d.path / 'policy.toml'}, then `fednb domain add-dataset {path} FILE --name NAME`")


@domain.command("add-dataset")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--name", required=True)
@click.option("--description", default="")
def domain_add_dataset(path: Path, file: Path, name: str, description: str) -> None:
    """Register a CSV or Parquet file and generate its mock."""
    d = _open(path)
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
    _echo_mock_report(_open(path), dataset)


@domain.command("approve-mock")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("dataset")
@click.option("--reason", default="", help="Recorded in the audit log.")
def domain_approve_mock(path: Path, dataset: str, reason: str) -> None:
    """Serve a dataset's mock to analysts (recorded in the audit log)."""
    d = _open(path)
    d.approve_mock(dataset, reason)
    click.echo(f"mock of '{dataset}' approved")
    _echo_mock_report(d, dataset)


@domain.command("datasets")
@click.argument("path", type=click.Path(path_type=Path))
def domain_datasets(path: Path) -> None:
    """List the domain's datasets."""
    for d in _open(path).datasets():
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
    _open(path).set_bounds(dataset, column, lo, hi)
    click.echo(f"{dataset}.{column}: noisy releases clamp values to [{lo:g}, {hi:g}]; analysts see these bounds")


@domain.command("budget")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def domain_budget(path: Path, as_json: bool) -> None:
    """Privacy budget spent by each analyst on each dataset, and what is left."""
    rows = _open(path).budgets()
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
    token = _open(path).invite(name, role="owner" if owner else "analyst", token=token)
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
    made = _open(path).invite_many(wanted)
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
    n = _open(path).revoke(name)
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

    d = _open(path)
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
def domain_serve(path: Path, host: str, port: int, certfile: str | None, keyfile: str | None) -> None:
    """Serve the domain's HTTP API, run approved jobs."""
    from fednb.domain.server import serve

    if bool(certfile) != bool(keyfile):
        raise click.UsageError("--certfile and --keyfile go together")
    serve(path, host, port, certfile=certfile, keyfile=keyfile)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else ""


@domain.command("requests")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--status", default=None, help="Only requests in this state (pending, done, ...).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000), help="Requests per page.")
@click.option("--offset", default=0, type=click.IntRange(0), help="Skip this many (the next page).")
@click.option("--json", "as_json", is_flag=True)
def domain_requests(path: Path, status: str | None, limit: int, offset: int, as_json: bool) -> None:
    """List requests, pending first, a page at a time; failed and blocked ones say why."""
    d = _open(path)
    reqs = d.requests(status=status, limit=limit, offset=offset)
    unchecked = d.policy.disclosure.allows_unchecked
    if as_json:
        click.echo(json.dumps([{**r.model_dump(exclude={"code", "result"}),
                                "unchecked_output": r.kind == "function" and unchecked(r.dataset)} for r in reqs],
                              indent=2))
        return
    if not reqs:
        click.echo("no requests")
    for r in reqs:
        what = f"{r.kind}:{r.name}"
        flag = "  [UNCHECKED OUTPUT ALLOWED]" if r.kind == "function" and unchecked(r.dataset) else ""
        why = f"  ({r.reason[:100]})" if r.status in ("failed", "blocked") and r.reason else ""
        click.echo(f"{r.id}  {r.status:8}  {_when(r.created_at)}  {r.analyst:14} {r.dataset:14} {what:22} "
                   f"{r.description[:50]}{flag}{why}")
    if len(reqs) == limit:
        click.echo(f"more: --offset {offset + limit}")


@domain.command("show")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("request_id")
def domain_show(path: Path, request_id: str) -> None:
    """Everything about one request: who, what, the exact code and its hash."""
    d = _open(path)
    r = d.request(d.resolve(request_id))
    click.echo(f"request      {r.id}\nstatus       {r.status}" + (f" ({r.reason})" if r.reason else ""))
    click.echo(f"analyst      {r.analyst}\ndataset      {r.dataset}\nkind         {r.kind}: {r.name}")
    click.echo(f"submitted    {_when(r.created_at)}\ndescription  {r.description or '-'}")
    click.echo(f"arguments    {json.dumps(r.args)}\nsha256       {r.code_hash}")
    if r.kind == "function" and d.policy.disclosure.allows_unchecked(r.dataset):
        click.echo("output       NOT CHECKED: the policy lets custom code on this dataset release numbers the domain "
                   "cannot check (disclosure.unchecked_output); your review is the only check")
    if r.code:
        click.echo("code:")
        for i, line in enumerate(r.code.splitlines(), 1):
            click.echo(f"  {i:3} | {line}")
    if r.result is not None:
        click.echo(f"released     {json.dumps(r.result)[:2000]}")


@domain.command("approve")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("request_id")
@click.option("--reason", default="", help="A note for the analyst and the audit log.")
@click.option("--same-code", is_flag=True,
              help="Also approve every other pending request with the same code hash, whoever sent it (a class).")
def domain_approve(path: Path, request_id: str, reason: str, same_code: bool) -> None:
    """Approve a pending request (its exact code hash)."""
    d = _open(path)
    rid = d.resolve(request_id)
    approved = d.approve_same_code(rid, reason) if same_code else [d.approve(rid, reason)]
    for r in approved:
        click.echo(f"approved {r.id} ({r.analyst}, {r.kind}:{r.name}, sha256 {r.code_hash[:12]}...); "
                   "it runs on the serving domain")


@domain.command("deny")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("request_id")
@click.option("--reason", required=True, help="Why; the analyst reads this.")
@click.option("--same-code", is_flag=True,
              help="Also deny every other pending request with the same code hash, whoever sent it (a class).")
def domain_deny(path: Path, request_id: str, reason: str, same_code: bool) -> None:
    """Deny a pending request, with a reason the analyst will read."""
    d = _open(path)
    rid = d.resolve(request_id)
    for r in d.deny_same_code(rid, reason) if same_code else [d.deny(rid, reason)]:
        click.echo(f"denied {r.id} ({r.analyst}): {r.reason}")


@domain.command("audit")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--verify", is_flag=True, help="Check the hash chain; exit 1 if broken.")
@click.option("--head", default=None, help="With --verify: a published head ('SEQ:HASH' or HASH) the log must contain.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON lines.")
@click.option("--tail", default=None, type=int, help="Only the last N entries.")
@click.option("--export", "export_to", type=click.Path(path_type=Path), default=None,
              help="Write a transparency report to publish: REPORT.html (one self-contained page) or REPORT.json.")
@click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True,
              help="Language of the HTML report.")
def domain_audit(path: Path, verify: bool, head: str | None, as_json: bool, tail: int | None,
                 export_to: Path | None, lang: str) -> None:
    """Show, verify or export (as a transparency report) the tamper-evident audit log."""
    d = _open(path)
    if export_to is not None:
        from fednb.domain.audit.report import export

        report = export(d, export_to, lang)
        audit = report["audit"]
        click.echo(f"wrote {export_to}: {report['totals']['requests']} requests, audit head {audit['head']}"
                   + ("" if audit["intact"] else " -- the audit log does NOT verify, see the report"))
        sys.exit(0 if audit["intact"] else 1)
    if verify:
        v = d.verify_audit(head)
        click.echo(str(v))
        sys.exit(0 if v.ok else 1)
    entries = d.audit_entries()
    if tail:
        entries = entries[-tail:]
    for e in entries:
        if as_json:
            click.echo(e.model_dump_json())
        else:
            click.echo(f"{e.seq:6} {e.time[:19]} {e.actor:18} {e.action:8} {e.object_id or '':12} "
                       f"{json.dumps(e.payload)[:80]}")


@main.group(cls=_Group)
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


@main.group(cls=_Group)
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


def _register_transparency() -> None:
    from fednb.cli_transparency import register

    register(main, domain)


_register_transparency()

if __name__ == "__main__":
    main()
