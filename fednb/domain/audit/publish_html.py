"""The front page of a published export (``index.html``, ``index.es.html``): the signed log head and
how to check it, the signed receipts of releases, and the sovereignty statement. Self-contained like
the report (inline CSS, no scripts, nothing fetched); every value is escaped."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from fednb.domain.audit.report_html import CSS, _code, _id, _table, _time

WORDS: dict[str, tuple[str, str]] = {
    "title": ("Public transparency log of the data domain {domain}", "Registro público de transparencia del dominio de datos {domain}"),
    "intro": ("Everything this domain did is an entry of an append-only Merkle log (as in Certificate Transparency, "
              "RFC 9162). The domain signs the log's head; anyone holding an earlier head can prove that no entry "
              "was changed or removed since. People appear under pseudonyms.",
              "Todo lo que hizo este dominio es una entrada de un registro Merkle de solo anexado (como en Certificate "
              "Transparency, RFC 9162). El dominio firma la cabeza del registro; quien guarde una cabeza anterior puede "
              "demostrar que desde entonces no se cambió ni se borró ninguna entrada. Las personas aparecen con seudónimos."),
    "head": ("Signed log head", "Cabeza firmada del registro"),
    "size": ("Entries", "Entradas"), "root": ("Merkle root (SHA-256)", "Raíz de Merkle (SHA-256)"),
    "signed_at": ("Signed at", "Firmada el"), "key": ("Domain key fingerprint (Ed25519)", "Huella de la clave del dominio (Ed25519)"),
    "check": ("Check this export without access to the domain (keep sth.json: next time, add --head OLD/sth.json):",
              "Verifique esta exportación sin acceso al dominio (guarde sth.json: la próxima vez, añada --head ANTERIOR/sth.json):"),
    "receipts": ("Signed receipts of releases", "Recibos firmados de las entregas"),
    "receipts_none": ("Nothing has been released yet.", "Todavía no se entregó nada."),
    "request": ("Request", "Solicitud"), "what": ("What", "Qué"), "dataset": ("Dataset", "Conjunto de datos"),
    "analyst": ("Analyst (pseudonym)", "Analista (seudónimo)"), "result_sha256": ("Result SHA-256 (salted)", "SHA-256 del resultado (con sal)"),
    "epsilon": ("ε spent", "ε gastado"), "entry": ("Log entry", "Entrada del registro"), "time": ("Time", "Hora"),
    "sovereignty": ("Sovereignty statement", "Declaración de soberanía"),
    "software": ("Software", "Software"), "isolation": ("Isolation of analysts' code", "Aislamiento del código de los analistas"),
    "network": ("Outbound connections", "Conexiones salientes"),
    "zero": ("The domain server attempted no outbound connection since {since}.",
             "El servidor del dominio no intentó ninguna conexión saliente desde {since}."),
    "some": ("The domain server attempted {n} outbound connection(s) since {since}:",
             "El servidor del dominio intentó {n} conexión(es) saliente(s) desde {since}:"),
    "covers": ("What this measures", "Qué se mide"), "where": ("Where each part runs", "Dónde corre cada parte"),
    "part": ("Part", "Parte"), "runs": ("Runs on", "Corre en"), "policy": ("Policy in force", "Política vigente"),
    "package": ("Distribution", "Distribución"),
    "packages": ("fednb and the {n} distributions it runs on, with versions and hashes",
                 "fednb y las {n} distribuciones sobre las que corre, con versiones y hashes"),
    "settings": ("Every setting, defaults included", "Todos los valores, incluidos los predeterminados"), "version": ("Version", "Versión"),
    "record": ("SHA-256 of its installed-files record", "SHA-256 de su registro de archivos instalados"),
    "full_report": ("The full transparency report (decisions, reasons, blocks)", "El informe de transparencia completo (decisiones, motivos, bloqueos)"),
    "names": ("Analysts named by the domain's policy", "Analistas nombrados por la política del dominio"),
    "other_lang": ("Versión en español", "English version"),
}


def word(lang: str, key: str, **kw: Any) -> str:
    en, es = WORDS[key]
    return escape((es if lang == "es" else en).format(**kw))


def render_index(published: dict[str, Any], proven: list[dict[str, Any]], lang: str = "en") -> str:
    t = lambda key, **kw: word(lang, key, **kw)  # noqa: E731
    sth, sov = published["sth"], published["sovereignty"]
    body = sth["body"]
    other = "index.html" if lang == "es" else "index.es.html"
    parts = [f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
             f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
             f'<title>{t("title", domain=body["domain"])}</title>\n<style>{CSS}</style>\n</head>\n<body>\n'
             f'<p class="muted"><a href="{other}">{t("other_lang")}</a></p>\n'
             f'<h1>{t("title", domain=body["domain"])}</h1>\n<p>{t("intro")}</p>\n',
             f'<h2>{t("head")}</h2>\n<div class="head"><p>{t("size")}: <b id="tree-size">{body["tree_size"]}</b><br>'
             f'{t("root")}: <code id="root-hash">{escape(body["root_hash"])}</code><br>'
             f'{t("signed_at")}: {escape(body["timestamp"])}<br>{t("key")}: <code>{escape(sth["fingerprint"])}</code></p>'
             f'<p>{t("check")}<br><code>fednb verify --log . --pin {escape(sth["fingerprint"])}</code></p></div>\n']
    rows = [[_id(r["body"]["request"]), _time(r["body"]["released_at"]), escape(r["body"]["what"]),
             escape(r["body"]["dataset"]), _id(r["body"]["analyst"]), f'{r["body"]["epsilon_spent"]:g}',
             r["body"]["audit_seq"], _code(r["body"]["result_sha256"])] for r in (p["receipt"] for p in proven)]
    parts.append(f'<h2>{t("receipts")}</h2>\n' + (_table(
        [t(k) for k in ("request", "time", "what", "dataset", "analyst", "epsilon", "entry", "result_sha256")],
        rows, numeric={5, 6}) if rows else f'<p>{t("receipts_none")}</p>\n'))
    if published.get("names"):
        parts.append(f'<h3>{t("names")}</h3>\n' + _table(["", ""], [[_code(p), escape(n)] for p, n in
                                                                    published["names"].items()]))
    parts.append(_sovereignty(sov, t))
    parts.append(f'<p><a href="report{".es" if lang == "es" else ""}.html">{t("full_report")}</a></p>\n'
                 "</body>\n</html>\n")
    return "".join(parts)


def _sovereignty(sov: dict[str, Any], t) -> str:
    net = sov["network"]
    since = _time(_iso(net["watching_since"])) if net["watching_since"] else "?"
    software = sov["software"]
    network = (f'<p>{t("zero", since=since)}</p>' if net["outbound_attempts"] == 0 else
               f'<p>{t("some", n=net["outbound_attempts"], since=since)}</p>'
               + _table(["", ""], [[_time(_iso(a.get("time", 0))), escape(str(a.get("to")))] for a in net["recent"]]))
    packages = _table([t("package"), t("version"), t("record")],
                      [[escape(d["name"]), escape(d["version"]), _code(d["record_sha256"])]
                       for d in software["distributions"]])
    settings = _table(["", ""], [[escape(section), _code(json.dumps(values, ensure_ascii=False))]
                                 for section, values in sov["policy"]["settings"].items()])
    return (f'<h2>{t("sovereignty")}</h2>\n'
            f'<h3>{t("isolation")}</h3>\n<p><b>{escape(sov["isolation"])}</b></p>\n'
            f'<h3>{t("network")}</h3>\n{network}\n<p class="muted">{t("covers")}: {escape(net["covers"])}</p>\n'
            f'<h3>{t("where")}</h3>\n' + _table([t("part"), t("runs")],
                                                [[escape(w["part"]), escape(w["runs"])] for w in sov["where"]])
            + f'<h3>{t("software")}</h3>\n<p>fednb {escape(software["fednb"])}, Python {escape(software["python"])}, '
              f'{escape(software["platform"])}</p>\n<details><summary>{t("packages", n=len(software["distributions"]))}'
              f'</summary>\n{packages}</details>\n'
            + f'<h3>{t("policy")}</h3>\n<p>policy.toml SHA-256 <code>{escape(sov["policy"]["file_sha256"])}</code></p>\n'
            + f'<details><summary>{t("settings")}</summary>\n{settings}</details>\n')


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
