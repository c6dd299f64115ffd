"""Every word of the transparency report, in English and Spanish, in one table.

Same shape as the Jupyter side's table (key: (English, Spanish), ``{placeholders}`` filled by
:func:`text`), so that both can live in one file. To add a language, add a column to every entry
and its code to ``LANGUAGES``.
"""

from __future__ import annotations

LANGUAGES = ("en", "es")

MESSAGES: dict[str, tuple[str, str]] = {
    "report.title": (
        "Transparency report of the data domain {domain}",
        "Informe de transparencia del dominio de datos {domain}",
    ),
    "report.intro": (
        "What analysts asked of this domain, what its owner decided and why, and what left it. "
        "Results themselves are not published here: each is identified by the SHA-256 of what was "
        "released.",
        "Qué pidieron los analistas a este dominio, qué decidió su propietario y por qué, y qué salió"
        " de él. Los resultados no se publican aquí: cada uno se identifica por el SHA-256 de lo que "
        "se entregó.",
    ),
    "report.generated": ("Generated {time} by fednb {version}.", "Generado el {time} por fednb {version}."),
    "report.period": (
        "Covers the audit log from {first} to {last}.",
        "Abarca el registro de auditoría desde {first} hasta {last}.",
    ),
    "report.integrity": ("Integrity", "Integridad"),
    "report.head": ("Audit log head (entry:hash)", "Cabeza del registro de auditoría (entrada:hash)"),
    "report.entries": ("Entries in the audit log", "Entradas en el registro de auditoría"),
    "report.intact": (
        "The hash chain was verified when this report was made.",
        "La cadena de hashes se verificó al generar este informe.",
    ),
    "report.broken": (
        "The hash chain did NOT verify when this report was made:",
        "La cadena de hashes NO se pudo verificar al generar este informe:",
    ),
    "report.how_to_check": (
        "To check that the log was not changed after this report, the owner runs:",
        "Para comprobar que el registro no cambió después de este informe, el propietario ejecuta:",
    ),
    "report.totals": ("Totals", "Totales"),
    "report.requests": ("Requests", "Solicitudes"),
    "report.status.pending": ("Pending review", "Pendientes de revisión"),
    "report.status.approved": ("Approved, waiting to run", "Aprobadas, en espera de ejecución"),
    "report.status.running": ("Running", "En ejecución"),
    "report.status.done": ("Done (result released)", "Terminadas (resultado entregado)"),
    "report.status.denied": ("Denied", "Denegadas"),
    "report.status.blocked": ("Blocked by disclosure control", "Bloqueadas por el control de divulgación"),
    "report.status.failed": ("Failed", "Fallidas"),
    "report.approved_by_owner": ("Approved by the owner", "Aprobadas por el propietario"),
    "report.approved_by_policy": (
        "Approved by the written policy (built-in aggregates)",
        "Aprobadas por la política escrita (agregados incorporados)",
    ),
    "report.approved_as_before": (
        "Approved as a repeat of code the owner approved before",
        "Aprobadas por repetir código que el propietario ya había aprobado",
    ),
    "report.denied_by_owner": ("Denied by the owner", "Denegadas por el propietario"),
    "report.released": ("Results released", "Resultados entregados"),
    "report.by_analyst": ("By analyst", "Por analista"),
    "report.by_dataset": ("By dataset", "Por conjunto de datos"),
    "report.analyst": ("Analyst", "Analista"),
    "report.dataset": ("Dataset", "Conjunto de datos"),
    "report.decisions": ("Decisions", "Decisiones"),
    "report.decisions_none": ("No decisions yet.", "Aún no hay decisiones."),
    "report.releases": ("Releases", "Entregas"),
    "report.releases_none": ("Nothing was released.", "No se entregó nada."),
    "report.blocks": ("Blocked by disclosure control", "Bloqueadas por el control de divulgación"),
    "report.blocks_none": ("Nothing was blocked.", "No se bloqueó nada."),
    "report.failures": ("Failed", "Fallidas"),
    "report.failures_none": ("Nothing failed.", "No falló nada."),
    "report.all_requests": ("All requests", "Todas las solicitudes"),
    "report.time": ("Time", "Hora"),
    "report.seq": ("Entry", "Entrada"),
    "report.request": ("Request", "Solicitud"),
    "report.what": ("What", "Qué"),
    "report.decision": ("Decision", "Decisión"),
    "report.decision.approve": ("approved", "aprobada"),
    "report.decision.deny": ("denied", "denegada"),
    "report.by": ("By", "Por"),
    "report.reason": ("Reason", "Motivo"),
    "report.result_sha256": ("SHA-256 of the result", "SHA-256 del resultado"),
    "report.description": ("Description", "Descripción"),
    "report.status": ("Status", "Estado"),
    "report.code_hash": ("SHA-256 of code and arguments", "SHA-256 del código y los argumentos"),
    "report.access": ("Access", "Acceso"),
    "report.invites": ("Tokens issued", "Tokens emitidos"),
    "report.revocations": ("Tokens revoked", "Tokens revocados"),
    "report.connects": ("Connections", "Conexiones"),
    "report.who": ("Who", "Quién"),
    "report.role": ("Role", "Rol"),
    "report.count": ("Count", "Cantidad"),
    "report.none": ("None.", "Ninguno."),
    "report.secure_aggregation": ("Identity and secure aggregation", "Identidad y agregación segura"),
    "report.fingerprint": (
        "This domain signs with the Ed25519 key of fingerprint {fingerprint}. It joins secure sums only "
        "with these peers, pinned by its owner:",
        "Este dominio firma con la clave Ed25519 de huella {fingerprint}. Solo participa en sumas "
        "seguras con estos pares, fijados por su propietario:",
    ),
    "report.peer": ("Peer domain", "Dominio par"),
    "report.peer_fingerprint": ("Fingerprint", "Huella"),
}


def text(lang: str, key: str, **values: object) -> str:
    """``key`` (without the ``report.`` prefix) in ``lang``, English when the language is unknown."""
    column = LANGUAGES.index(lang) if lang in LANGUAGES else 0
    return MESSAGES["report." + key][column].format(**values)
