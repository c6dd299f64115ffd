"""The transparency report as one self-contained HTML page: inline CSS, no scripts, no fonts or images
from anywhere, so it opens offline and can be published as a single file. Every value is escaped:
descriptions and reasons are free text written by analysts and owners."""

from __future__ import annotations

from html import escape
from typing import Any

from fednb.domain.audit.report_text import text
from fednb.models import STATUSES

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232a;
       max-width: 72rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #d5dbe1; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: .92rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #e7ebef; vertical-align: top; }
th { background: #f3f5f7; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font: .85rem ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
code.id { white-space: nowrap; word-break: normal; }
.head { background: #f3f7f3; border: 1px solid #bcd8bc; padding: .8rem 1rem; border-radius: 4px; }
.broken { background: #fbeeee; border-color: #e0a8a8; }
.muted { color: #5b6770; }
"""


def render(report: dict[str, Any], lang: str = "en") -> str:
    t = lambda key, **kw: escape(text(lang, key, **kw))  # noqa: E731
    audit = report["audit"]
    parts = [f'<!DOCTYPE html>\n<html lang="{escape(lang)}">\n<head>\n<meta charset="utf-8">\n'
             f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
             f'<meta name="fednb-audit-head" content="{escape(audit["head"])}">\n'
             f'<title>{t("title", domain=report["domain"])}</title>\n<style>{CSS}</style>\n</head>\n<body>\n',
             f'<h1>{t("title", domain=report["domain"])}</h1>\n']
    if report.get("description"):
        parts.append(f'<p>{escape(report["description"])}</p>\n')
    generated = t("generated", time=report["generated_at"], version=report["fednb_version"])
    parts.append(f'<p>{t("intro")}</p>\n<p class="muted">{generated}'
                 + (f' {t("period", first=report["period"]["first"], last=report["period"]["last"])}'
                    if report["period"]["first"] else "") + "</p>\n")

    # integrity: the head a reader can check the log against
    state = t("intact") if audit["intact"] else t("broken")
    problems = "".join(f"<li>{escape(p)}</li>" for p in audit["problems"])
    parts.append(f'<h2>{t("integrity")}</h2>\n<div class="head{"" if audit["intact"] else " broken"}">'
                 f'<p>{t("head")}: <code id="audit-head">{escape(audit["head"])}</code><br>'
                 f'{t("entries")}: {audit["entries"]}</p><p>{state}</p>'
                 + (f"<ul>{problems}</ul>" if problems else "")
                 + f'<p>{t("how_to_check")}<br><code>{escape(audit["verify"])}</code></p></div>\n')

    totals = report["totals"]
    rows = [(t("requests"), totals["requests"])] + [(t(f"status.{s}"), totals[s]) for s in STATUSES] + [
        (t(k), totals[k]) for k in ("approved_by_owner", "approved_by_policy", "approved_as_before",
                                    "denied_by_owner", "released")]
    parts.append(f'<h2>{t("totals")}</h2>\n' + _table([""], [[escape(label), n] for label, n in rows], numeric={1}))

    for key, label in (("by_analyst", "analyst"), ("by_dataset", "dataset")):
        header = [t(label), t("requests")] + [t(f"status.{s}") for s in STATUSES]
        body = [[escape(name), c["requests"], *(c[s] for s in STATUSES)] for name, c in report[key].items()]
        parts.append(f"<h2>{t(key)}</h2>\n" + (_table(header, body, numeric=set(range(1, len(header))))
                                               if body else f"<p>{t('none')}</p>\n"))

    sections = [
        ("decisions", ["seq", "time", "request", "analyst", "dataset", "what", "decision", "by", "reason"],
         lambda r: [r["seq"], _time(r["time"]), _id(r["request"]), escape(r["analyst"]), escape(r["dataset"]),
                    escape(r["what"]), t(f"decision.{r['decision']}"), escape(r["by"]), escape(r["reason"])]),
        ("releases", ["seq", "time", "request", "analyst", "dataset", "what", "result_sha256"],
         lambda r: [r["seq"], _time(r["time"]), _id(r["request"]), escape(r["analyst"]), escape(r["dataset"]),
                    escape(r["what"]), _code(r["result_sha256"] or "")]),
        ("blocks", ["seq", "time", "request", "analyst", "dataset", "what", "reason"],
         lambda r: [r["seq"], _time(r["time"]), _id(r["request"]), escape(r["analyst"]), escape(r["dataset"]),
                    escape(r["what"]), escape(r["reason"] or "")]),
        ("failures", ["seq", "time", "request", "analyst", "dataset", "what", "reason"],
         lambda r: [r["seq"], _time(r["time"]), _id(r["request"]), escape(r["analyst"]), escape(r["dataset"]),
                    escape(r["what"]), escape(r["reason"] or "")]),
    ]
    for key, columns, row in sections:
        items = report[key]
        parts.append(f"<h2>{t(key)}</h2>\n" + (_table([t(c) for c in columns], [row(r) for r in items], numeric={0})
                                              if items else f"<p>{t(key + '_none')}</p>\n"))

    parts.append(f'<h2>{t("all_requests")}</h2>\n' + _table(
        [t(c) for c in ("request", "time", "analyst", "dataset", "what", "description", "status", "code_hash")],
        [[_id(r["id"]), _time(r["submitted"]), escape(r["analyst"]), escape(r["dataset"] or ""),
          escape(f"{r['kind']}:{r['name']}"), escape(r["description"] or ""),
          t(f"status.{r['status']}") if r["status"] in STATUSES else escape(r["status"]), _code(r["code_hash"] or "")]
         for r in report["requests"]]) if report["requests"] else f'<h2>{t("all_requests")}</h2>\n<p>{t("none")}</p>\n')

    access = report["access"]
    parts.append(f'<h2>{t("access")}</h2>\n<h3>{t("invites")}</h3>\n'
                 + (_table([t("seq"), t("time"), t("who"), t("role")],
                           [[i["seq"], _time(i["time"]), escape(i["who"] or ""), escape(i["role"] or "")]
                            for i in access["invites"]], numeric={0}) if access["invites"] else f"<p>{t('none')}</p>\n")
                 + f'<h3>{t("revocations")}</h3>\n'
                 + (_table([t("seq"), t("time"), t("who")],
                           [[i["seq"], _time(i["time"]), escape(i["who"] or "")] for i in access["revocations"]],
                           numeric={0}) if access["revocations"] else f"<p>{t('none')}</p>\n")
                 + f'<h3>{t("connects")}</h3>\n'
                 + (_table([t("who"), t("count")], [[escape(w), n] for w, n in access["connects"].items()],
                           numeric={1}) if access["connects"] else f"<p>{t('none')}</p>\n"))
    secure = report["secure_aggregation"]
    parts.append(f'<h2>{t("secure_aggregation")}</h2>\n<p>{t("fingerprint", fingerprint=secure["fingerprint"])}</p>\n'
                 + (_table([t("peer"), t("peer_fingerprint"), "URL"],
                           [[escape(p["name"]), _code(p["fingerprint"]), escape(p["url"])] for p in secure["pinned_peers"]])
                    if secure["pinned_peers"] else f"<p>{t('none')}</p>\n"))
    parts.append("</body>\n</html>\n")
    return "".join(parts)


def _table(header: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{h}</th>" for h in header) if any(header) else ""
    body = "".join("<tr>" + "".join(f'<td class="n">{v}</td>' if i in numeric else f"<td>{v}</td>"
                                    for i, v in enumerate(row)) + "</tr>\n" for row in rows)
    return f"<table>\n{'<tr>' + head + '</tr>' if head else ''}\n{body}</table>\n"


def _code(value: str) -> str:
    return f"<code>{escape(value)}</code>"


def _id(value: str) -> str:
    return f'<code class="id">{escape(value)}</code>'


def _time(iso: str) -> str:
    return escape(iso[:19].replace("T", " "))
