"""``fednb domain requests|show|approve|deny|audit``: the owner reviews requests and reads the log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from fednb.cli.base import open_domain, when
from fednb.cli.owner import domain


@domain.command("requests")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--status", default=None, help="Only requests in this state (pending, done, ...).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000), help="Requests per page.")
@click.option("--offset", default=0, type=click.IntRange(0), help="Skip this many (the next page).")
@click.option("--json", "as_json", is_flag=True)
def domain_requests(path: Path, status: str | None, limit: int, offset: int, as_json: bool) -> None:
    """List requests, pending first, a page at a time; failed and blocked ones say why."""
    d = open_domain(path)
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
        click.echo(f"{r.id}  {r.status:8}  {when(r.created_at)}  {r.analyst:14} {r.dataset:14} {what:22} "
                   f"{r.description[:50]}{flag}{why}")
    if len(reqs) == limit:
        click.echo(f"more: --offset {offset + limit}")


@domain.command("show")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("request_id")
def domain_show(path: Path, request_id: str) -> None:
    """Everything about one request: who, what, the exact code and its hash."""
    d = open_domain(path)
    r = d.request(d.resolve(request_id))
    click.echo(f"request      {r.id}\nstatus       {r.status}" + (f" ({r.reason})" if r.reason else ""))
    click.echo(f"analyst      {r.analyst}\ndataset      {r.dataset}\nkind         {r.kind}: {r.name}")
    click.echo(f"submitted    {when(r.created_at)}\ndescription  {r.description or '-'}")
    click.echo(f"arguments    {json.dumps(r.args)}\nsha256       {r.code_hash}")
    if r.kind != "builtin":  # what the job may load is part of what the owner approves
        click.echo(f"columns      {', '.join(r.limits.columns) if r.limits.columns else 'all (none declared)'}")
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
@click.option("--all-domains", is_flag=True,
              help="Also approve this request's copies with the same code hash on every domain your owner "
                   "profile lists (fednb profile add-owner); a domain whose copy has other code is named, not approved.")
@click.option("--profile", "profile_name", default="default", show_default=True,
              help="With --all-domains: the profile whose owner domains (folders or URLs) to approve on.")
def domain_approve(path: Path, request_id: str, reason: str, same_code: bool, all_domains: bool,
                   profile_name: str) -> None:
    """Approve a pending request (its exact code hash)."""
    d = open_domain(path)
    rid = d.resolve(request_id)
    if all_domains:
        approve_on_all_domains(d, rid, reason, profile_name)
        return
    approved = d.approve_same_code(rid, reason) if same_code else [d.approve(rid, reason)]
    for r in approved:
        click.echo(f"approved {r.id} ({r.analyst}, {r.kind}:{r.name}, sha256 {r.code_hash[:12]}...); "
                   "it runs on the serving domain")


def approve_on_all_domains(d, request_id: str, reason: str, profile_name: str) -> None:
    """``--all-domains``: this folder's domain first, then each owner entry of the profile (a domain
    listed twice, as a folder and a URL, is approved once); exits 1 if any copy was not approved."""
    import asyncio

    from fednb.client import profile as profiles
    from fednb.jupyter.approve_all import APPROVED, NOT_FOUND, approve_everywhere, summary
    from fednb.jupyter.owner import FolderOwner, make_source

    async def run() -> list:
        sources = {d.name: FolderOwner(str(d.path))}
        entries = profiles.load_owner(profile_name)
        found = [make_source(e) for e in entries]
        names = await asyncio.gather(*(s.name() for s in found), return_exceptions=True)
        for entry, source, name in zip(entries, found, names):
            if not isinstance(name, str):
                click.echo(f"{entry.get('path') or entry.get('url')}: NOT reached: {name}", err=True)
            elif name not in sources:
                sources[name] = source
        return await approve_everywhere(sources, d.name, request_id, reason)

    d.close()
    outcomes = asyncio.run(run())
    for line in summary(outcomes):
        click.echo(line)
    sys.exit(0 if all(o.status in (APPROVED, NOT_FOUND) for o in outcomes) else 1)


@domain.command("deny")
@click.argument("path", type=click.Path(path_type=Path))
@click.argument("request_id")
@click.option("--reason", required=True, help="Why; the analyst reads this.")
@click.option("--same-code", is_flag=True,
              help="Also deny every other pending request with the same code hash, whoever sent it (a class).")
def domain_deny(path: Path, request_id: str, reason: str, same_code: bool) -> None:
    """Deny a pending request, with a reason the analyst will read."""
    d = open_domain(path)
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
    d = open_domain(path)
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
