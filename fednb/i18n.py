"""Every string fednb's Jupyter face shows a person, in English and Spanish, in one table.

``t("tracker.title", name=...)`` looks a key up in the current language and fills its ``{fields}``.
The language is English unless ``FEDNB_LANGUAGE`` (set by ``fednb demo --lab --lang es`` for its
kernels and server) or the locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``, ``LANGUAGE``) says Spanish, or
``fednb.set_language("es")`` chose it. The JupyterLab extension reads the same table
through the server extension (``GET /fednb/api/strings?lang=es``), keyed by the lab's language.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

LANGUAGES = ("en", "es")
DEFAULT = "en"

# key: (English, Spanish). Keys starting "lab." are the JupyterLab panels'; "status." are request states.
MESSAGES: dict[str, tuple[str, str]] = {
    # -- request states ----------------------------------------------------------------------------
    "status.pending": ("pending review", "pendiente de revisión"),
    "status.approved": ("approved", "aprobada"),
    "status.denied": ("denied", "denegada"),
    "status.running": ("running", "en ejecución"),
    "status.done": ("done", "terminada"),
    "status.failed": ("failed", "fallida"),
    "status.blocked": ("blocked", "bloqueada"),
    "status.error": ("not submitted", "no enviada"),
    "status.unknown": ("unknown", "desconocido"),
    # -- common ------------------------------------------------------------------------------------
    "common.domain": ("Domain", "Dominio"),
    "common.dataset": ("Dataset", "Conjunto de datos"),
    "common.request": ("Request", "Solicitud"),
    "common.state": ("State", "Estado"),
    "common.details": ("Details", "Detalles"),
    "common.result": ("Result", "Resultado"),
    "common.rows": ("Rows", "Filas"),
    "common.columns": ("Columns", "Columnas"),
    "common.description": ("Description", "Descripción"),
    "common.loading": ("Loading…", "Cargando…"),
    "common.refresh": ("Refresh", "Actualizar"),
    "common.none": ("none", "ninguno"),
    "common.updated": ("updated {time}", "actualizado {time}"),
    "common.approx_rows": ("~{rows}", "~{rows}"),
    # -- why a domain gives no result --------------------------------------------------------------
    "why.denied": ("denied by the owner: {reason}", "denegada por el propietario: {reason}"),
    "why.blocked": ("blocked by disclosure control: {reason}", "bloqueada por el control de divulgación: {reason}"),
    "why.failed": ("failed: {reason}", "falló: {reason}"),
    "why.waiting": ("waiting for the owner's review", "esperando la revisión del propietario"),
    "why.approved": ("approved: {reason}", "aprobada: {reason}"),
    "why.running": ("running on the domain", "ejecutándose en el dominio"),
    "errors.not_enough_domains": ("{got} domain(s) gave a result but {needed} are required (min_domains={needed}).",
                                  "{got} dominio(s) dieron un resultado, pero se necesitan {needed} "
                                  "(min_domains={needed})."),
    # -- federation widget -------------------------------------------------------------------------
    "fed.title": ("Federation of {n} domain(s)", "Federación de {n} dominio(s)"),
    "fed.domains": ("Domains", "Dominios"),
    "fed.datasets": ("Datasets", "Conjuntos de datos"),
    "fed.url": ("Address", "Dirección"),
    "fed.status": ("Status", "Estado"),
    "fed.up": ("up", "activo"),
    "fed.down": ("down", "caído"),
    "fed.isolation": ("Sandbox isolation", "Aislamiento del sandbox"),
    "fed.version": ("Version", "Versión"),
    "fed.problem": ("Problem", "Problema"),
    "fed.no_datasets": ("No datasets on the reachable domains.", "No hay conjuntos de datos en los dominios accesibles."),
    "fed.schema": ("Schema", "Esquema"),
    "fed.mock": ("Mock preview (synthetic rows, never real data)", "Vista del mock (filas sintéticas, nunca datos reales)"),
    "fed.show_mock": ("Show mock", "Ver mock"),
    "fed.on_domains": ("on {domains}", "en {domains}"),
    "fed.column": ("Column", "Columna"),
    "fed.dtype": ("Type", "Tipo"),
    "fed.kind": ("Kind", "Clase"),
    "fed.values": ("Levels / range", "Niveles / rango"),
    "fed.missing": ("Missing values", "Valores faltantes"),
    "fed.yes": ("yes", "sí"),
    "fed.no": ("no", "no"),
    "fed.pick": ("Dataset", "Conjunto de datos"),
    # -- column kinds (fednb.models.Column.kind) and sandbox isolation levels (run/sandbox/selftest) ----
    "kind.numeric": ("numeric", "numérica"),
    "kind.integer": ("integer", "entera"),
    "kind.boolean": ("boolean", "booleana"),
    "kind.categorical": ("categorical", "categórica"),
    "kind.datetime": ("datetime", "fecha y hora"),
    "kind.text": ("text", "texto"),
    "isolation.strong": ("strong", "fuerte"),
    "isolation.standard": ("standard", "estándar"),
    "isolation.minimal": ("minimal", "mínimo"),
    "isolation.none": ("none", "ninguno"),
    # -- request tracker ---------------------------------------------------------------------------
    "tracker.title": ("{kind} {name} on {dataset}", "{kind} {name} sobre {dataset}"),
    "tracker.kind.builtin": ("Built-in", "Agregado"),
    "tracker.kind.function": ("Function", "Función"),
    "tracker.kind.training": ("Training", "Entrenamiento"),
    "tracker.following": ("{final} of {total} domain(s) final; following live", "{final} de {total} dominio(s) finalizados; siguiendo en vivo"),
    "tracker.all_final": ("all {total} domain(s) final", "los {total} dominio(s) finalizados"),
    "tracker.stopped": ("stopped following; call .refresh() for news", "ya no se sigue; llame a .refresh() para novedades"),
    # -- results -----------------------------------------------------------------------------------
    "result.title": ("{statistic} over {n} domain(s)", "{statistic} sobre {n} dominio(s)"),
    "result.by_domain": ("By domain", "Por dominio"),
    "result.missing": ("Missing {domain}: {why}", "Falta {domain}: {why}"),
    "result.count": ("Count", "Recuento"),
    "result.bin": ("Bin", "Intervalo"),
    "result.suppressed": ("suppressed", "suprimido"),
    "result.value": ("Value", "Valor"),
    "result.error_bound": ("within ±{bound}", "con error ±{bound}"),
    "result.exact": ("exact", "exacto"),
    # the released value's small tables (fednb.widgets.released), in the tracker and both panels
    "result.edge": ("Edge", "Límite"),
    "result.rows_below": ("Rows below", "Filas por debajo"),
    "result.fact.suppressed": ("suppressed cells", "celdas suprimidas"),
    "result.fact.merged": ("merged groups", "grupos fusionados"),
    "result.noise": ("noise added", "con ruido añadido"),
    "result.mechanism": ("mechanism", "mecanismo"),
    "result.noise_with": ("noise added: {details}", "con ruido añadido: {details}"),
    "result.more.bins": ("… {n} more bins", "… {n} intervalos más"),
    "result.more.rows": ("… {n} more rows", "… {n} filas más"),
    "result.more.columns": ("… {n} more columns", "… {n} columnas más"),
    "result.more.entries": ("… {n} more entries", "… {n} entradas más"),
    "result.more.values": ("… {n} more values", "… {n} valores más"),
    "result.more.edges": ("… {n} more edges", "… {n} límites más"),
    "by_domain.suppressed": ("suppressed", "celdas suprimidas"),
    "stat.count": ("count", "recuento"),
    "stat.sum": ("sum of {column}", "suma de {column}"),
    "stat.mean": ("mean of {column}", "media de {column}"),
    "stat.variance": ("variance of {column}", "varianza de {column}"),
    "stat.histogram": ("histogram of {column}", "histograma de {column}"),
    "stat.quantiles": ("quantiles of {column}", "cuantiles de {column}"),
    "stat.crosstab": ("crosstab of {row} by {col}", "tabla cruzada de {row} por {col}"),
    "note.suppressed_histogram": ("NA cells were suppressed by a domain (fewer rows than its minimum cell count)",
                                  "las celdas NA las suprimió un dominio (menos filas que su recuento mínimo por celda)"),
    "note.suppressed_crosstab": ("NA cells were suppressed by a domain, with complements so they cannot be derived",
                                 "las celdas NA las suprimió un dominio, con complementarias para que no se puedan "
                                 "deducir"),
    "note.noise": ("noise added by {spent}", "ruido añadido por {spent}"),
    # -- training dashboard ------------------------------------------------------------------------
    "train.title": ("Federated training", "Entrenamiento federado"),
    "train.loss": ("Loss", "Pérdida"),
    "train.accuracy": ("Accuracy", "Exactitud"),
    "train.round": ("Round", "Ronda"),
    "train.global": ("global", "global"),
    "train.dropped": ("dropped out", "abandonó"),
    "train.timeout": ("timed out", "agotó el tiempo"),
    "train.failed": ("failed", "falló"),
    "train.ok": ("answered", "respondió"),
    "train.global_eval": ("global (held-out evaluation)", "global (evaluación aparte)"),
    "train.waiting": ("waiting for the first round", "esperando la primera ronda"),
    "train.status": ("round {round}: {ok} of {total} domain(s) answered", "ronda {round}: respondieron {ok} de {total} dominio(s)"),
    "train.global_now": ("global loss {loss}, accuracy {accuracy}", "pérdida global {loss}, exactitud {accuracy}"),
    "train.dropouts": ("Drop-outs: {list}", "Abandonos: {list}"),
    "train.dropout_item": ("round {round} {domain} ({why})", "ronda {round} {domain} ({why})"),
    "train.bad_record": ("a training record needs {what}; got {got!r}", "un registro de entrenamiento necesita {what}; se recibió {got!r}"),
    # -- notebook authoring ------------------------------------------------------------------------
    "magic.usage": ("usage: %%fednb submit DATASET [--description TEXT] [--fed VARIABLE] [--name FUNCTION]",
                    "uso: %%fednb submit DATASET [--description TEXTO] [--fed VARIABLE] [--name FUNCIÓN]"),
    "magic.no_function": ("the cell defines no function to submit", "la celda no define ninguna función para enviar"),
    "magic.only_defs": ("line {line}: a cell to submit holds only function definitions (imports go inside the function)",
                        "línea {line}: una celda para enviar contiene solo definiciones de funciones (los import van dentro de la función)"),
    "magic.which": ("the cell defines {names}; say which one with --name", "la celda define {names}; indique cuál con --name"),
    "magic.columns": ("columns=... in @fednb.function must be a list of column names written out in the cell",
                      "columns=... en @fednb.function debe ser una lista de nombres de columna escrita en la celda"),
    "magic.no_such": ("the cell defines no function {name!r}", "la celda no define la función {name!r}"),
    "magic.syntax": ("the cell does not parse: {msg} (line {line})", "la celda no se puede leer: {msg} (línea {line})"),
    "magic.no_fed": ("no federation: connect first (fed = fednb.connect(...)), pass --fed VARIABLE, or save a profile",
                     "no hay federación: conéctese primero (fed = fednb.connect(...)), use --fed VARIABLE o guarde un perfil"),
    "magic.not_fed": ("{var!r} is not a fednb Federation", "{var!r} no es una Federation de fednb"),
    "magic.no_var": ("no variable {var!r} in the notebook", "no hay ninguna variable {var!r} en el cuaderno"),
    "magic.error": ("fednb: {message}", "fednb: {message}"),
    "magic.submitted": ("submitted {name} to {n} domain(s) for review", "{name} enviada a {n} dominio(s) para revisión"),
    # -- progress ----------------------------------------------------------------------------------
    "progress.wait": ("{name} on {n} domain(s)", "{name} en {n} dominio(s)"),
    # -- server extension errors -------------------------------------------------------------------
    "api.bad_json": ("the body must be a JSON object", "el cuerpo debe ser un objeto JSON"),
    "api.need_reason": ("a denial needs a reason; the analyst will read it", "una denegación necesita un motivo; el analista lo leerá"),
    "api.reason_type": ("'reason' must be text of at most 5000 characters", "'reason' debe ser un texto de 5000 caracteres como máximo"),
    "api.no_owner": ("no owner credentials are configured: add a domain folder or a URL and owner token to your fednb profile",
                     "no hay credenciales de propietario: añada la carpeta de un dominio o una URL y un token de propietario a su perfil de fednb"),
    "api.no_profile": ("no fednb profile {profile!r}: save one with fednb.save_profile(...)",
                       "no existe el perfil de fednb {profile!r}: guárdelo con fednb.save_profile(...)"),
    "api.unknown_domain": ("no configured domain named {domain!r}", "no hay ningún dominio configurado llamado {domain!r}"),
    "api.bad_status": ("unknown status {status!r}", "estado desconocido {status!r}"),
    "api.bad_id": ("{what} {value!r} is not a valid name", "{what} {value!r} no es un nombre válido"),
    "api.unexpected": ("unexpected error (reference {ref} in the Jupyter server log)",
                       "error inesperado (referencia {ref} en el registro del servidor Jupyter)"),
    "api.bad_owner_entry": ("owner entry {entry} needs either 'path' or both 'url' and 'token'",
                            "la entrada de propietario {entry} necesita 'path' o bien 'url' y 'token'"),
    # -- survival plots ----------------------------------------------------------------------------
    "surv.km_title": ("Survival of {duration} (event: {event})", "Supervivencia según {duration} (evento: {event})"),
    "surv.time": ("Time", "Tiempo"),
    "surv.survival": ("Survival probability", "Probabilidad de supervivencia"),
    "surv.at_risk": ("Number at risk", "Número en riesgo"),
    "surv.band": ("{level}% band", "banda del {level}%"),
    "surv.all": ("All", "Todos"),
    "surv.forest_title": ("Hazard ratios: {formula}", "Razones de riesgo: {formula}"),
    "surv.hazard_ratio": ("Hazard ratio (log scale), {level}% CI", "Razón de riesgo (escala log), IC del {level}%"),
    "surv.no_effect": ("no effect", "sin efecto"),
    # -- JupyterLab: analyst panel -----------------------------------------------------------------
    "lab.analyst.title": ("Federation", "Federación"),
    "lab.analyst.caption": ("fednb: my domains, datasets and requests", "fednb: mis dominios, datos y solicitudes"),
    "lab.analyst.domains": ("Domains", "Dominios"),
    "lab.analyst.datasets": ("Datasets", "Conjuntos de datos"),
    "lab.analyst.requests": ("My requests", "Mis solicitudes"),
    "lab.analyst.no_requests": ("No requests yet.", "Aún no hay solicitudes."),
    "lab.analyst.no_profile": ("No fednb profile yet. In a notebook: fednb.save_profile(\"default\", [{\"url\": ..., \"token\": ...}])",
                               "Aún no hay perfil de fednb. En un cuaderno: fednb.save_profile(\"default\", [{\"url\": ..., \"token\": ...}])"),
    "lab.analyst.result": ("Released result", "Resultado publicado"),
    "lab.analyst.reason": ("Reason", "Motivo"),
    "lab.analyst.as": ("as {analyst}", "como {analyst}"),
    # -- JupyterLab: owner review ------------------------------------------------------------------
    "lab.owner.title": ("Review", "Revisión"),
    "lab.owner.caption": ("fednb: requests waiting for your review", "fednb: solicitudes que esperan su revisión"),
    "lab.owner.pending": ("Pending requests", "Solicitudes pendientes"),
    "lab.owner.recent": ("Recently decided", "Decididas recientemente"),
    "lab.owner.none_pending": ("Nothing waits for your review.", "Nada espera su revisión."),
    "lab.owner.analyst": ("Analyst", "Analista"),
    "lab.owner.submitted": ("Submitted", "Enviada"),
    "lab.owner.hash": ("SHA-256 of code and arguments", "SHA-256 del código y los argumentos"),
    "lab.owner.columns": ("Columns it may read", "Columnas que puede leer"),
    "lab.owner.columns.all": ("every column (it declares none)", "todas las columnas (no declara ninguna)"),
    "lab.owner.output": ("Output check", "Control de la salida"),
    "lab.owner.mocks": ("Mocks served to analysts", "Datos simulados que ven los analistas"),
    "lab.owner.mock.unreviewed": ("not reviewed", "sin revisar"),
    "lab.owner.mock.approved": ("approved", "aprobado"),
    "lab.owner.mock_summary": ("tier {tier} · correlation error {correlation} · pMSE ratio {pmse} · exact matches "
                               "{exact} · closer to real {closer} (fednb domain mock-report; approve-mock)",
                               "nivel {tier} · error de correlación {correlation} · razón pMSE {pmse} · "
                               "coincidencias exactas {exact} · más cerca de lo real {closer} "
                               "(fednb domain mock-report; approve-mock)"),
    "lab.owner.output.checked": ("checked: only fednb.table/fednb.stat values the domain verifies row by row, "
                                 "and short labels, can leave",
                                 "controlada: solo salen valores de fednb.table/fednb.stat que el dominio verifica "
                                 "fila por fila, y etiquetas cortas"),
    "lab.owner.output.unchecked": ("NOT CHECKED: this dataset's policy (disclosure.unchecked_output) lets custom "
                                   "code release numbers the domain cannot check; your review is the only check",
                                   "SIN CONTROL: la política de este conjunto (disclosure.unchecked_output) deja que "
                                   "el código publique números que el dominio no puede comprobar; su revisión es el "
                                   "único control"),
    "lab.owner.output.unknown": ("unknown: see disclosure.unchecked_output in the domain's policy.toml",
                                 "desconocido: vea disclosure.unchecked_output en el policy.toml del dominio"),
    "lab.owner.arguments": ("Arguments", "Argumentos"),
    "lab.owner.code": ("Code", "Código"),
    "lab.owner.diff": ("Changes since the version you approved on {date} (request {id})",
                       "Cambios desde la versión que aprobó el {date} (solicitud {id})"),
    "lab.owner.no_previous": ("No earlier approved version of this function by this analyst.",
                              "No hay una versión aprobada anterior de esta función de este analista."),
    "lab.owner.identical": ("Same code as the version approved in request {id}.", "Mismo código que la versión aprobada en la solicitud {id}."),
    "lab.owner.reason": ("Reason (the analyst reads it; required to deny)", "Motivo (el analista lo lee; obligatorio para denegar)"),
    "lab.owner.need_reason": ("Write the reason for the denial first; the analyst will read it.",
                              "Escriba primero el motivo de la denegación; el analista lo leerá."),
    "lab.owner.approve": ("Approve", "Aprobar"),
    "lab.owner.deny": ("Deny", "Denegar"),
    "lab.owner.approve_all": ("Approve on all my domains", "Aprobar en todos mis dominios"),
    "lab.owner.released": ("What the domain released", "Lo que el dominio publicó"),
    "lab.owner.all.approved": ("{domain}: approved {id}", "{domain}: aprobada {id}"),
    "lab.owner.all.hash_differs": ("{domain}: NOT approved, other code: {message}",
                                   "{domain}: NO aprobada, otro código: {message}"),
    "lab.owner.all.not_found": ("{domain}: nothing to approve ({message})", "{domain}: nada que aprobar ({message})"),
    "lab.owner.all.error": ("{domain}: NOT approved: {message}", "{domain}: NO aprobada: {message}"),
    "lab.owner.decided": ("{status} by {by}", "{status} por {by}"),
    "lab.owner.open": ("Review {name}", "Revisar {name}"),
    "lab.owner.builtin": ("Built-in aggregate (fednb's own code): review its dataset and arguments above.",
                          "Agregado predefinido (código propio de fednb): revise arriba su conjunto de datos y sus argumentos."),
    "lab.owner.decided_note": ("Decided; a changed request comes back as a new one.",
                               "Decidida; una solicitud modificada vuelve como una nueva."),
    "lab.owner.tab": ("Review: {name}", "Revisión: {name}"),
    # -- JupyterLab: submit command ----------------------------------------------------------------
    "lab.submit.command": ("Submit to federation…", "Enviar a la federación…"),
    "lab.submit.title": ("Submit {name} to the federation", "Enviar {name} a la federación"),
    "lab.submit.dataset": ("Dataset", "Conjunto de datos"),
    "lab.submit.description": ("Description for the data owners", "Descripción para los propietarios de los datos"),
    "lab.submit.function": ("Function to run", "Función a ejecutar"),
    "lab.submit.placeholder": ("What it computes and why", "Qué calcula y por qué"),
    "lab.submit.ok": ("Submit", "Enviar"),
    "lab.submit.cancel": ("Cancel", "Cancelar"),
    "lab.submit.no_kernel": ("Start the notebook's kernel first.", "Inicie primero el kernel del cuaderno."),
    "lab.submit.no_datasets": ("The kernel's federation has no datasets: {why}", "La federación del kernel no tiene conjuntos de datos: {why}"),
    "lab.submit.not_code": ("Select a code cell that defines a function.", "Seleccione una celda de código que defina una función."),
    "lab.error": ("fednb: {message}", "fednb: {message}"),
}

_language: str | None = None
# One caller's language for a while (one browser's request to the lab's server extension), over the
# process's own: a context variable, so concurrent requests in other tasks or threads keep theirs.
_asked: ContextVar[str | None] = ContextVar("fednb_language", default=None)


def _from_locale() -> str:
    for var in ("FEDNB_LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = os.environ.get(var, "")
        if value:
            code = value.split(":")[0][:2].lower()
            return code if code in LANGUAGES else DEFAULT
    return DEFAULT


def normalize(language: str | None) -> str:
    """'es', 'es-ES', 'es_AR.UTF-8' -> 'es'; anything unknown -> 'en'."""
    code = (language or "")[:2].lower()
    return code if code in LANGUAGES else DEFAULT


def get_language() -> str:
    return _asked.get() or _language or _from_locale()


@contextmanager
def speaking(language: str | None) -> Iterator[str]:
    """Within the block, in this task or thread only, fednb speaks ``language`` (the lab's server
    extension building one browser's tables and captions); afterwards, what it spoke before."""
    token = _asked.set(normalize(language) if language else None)
    try:
        yield get_language()
    finally:
        _asked.reset(token)


def set_language(language: str | None) -> str:
    """Choose the language of fednb's widgets and messages: "en" or "es" (None: follow the locale)."""
    global _language
    if language is not None and language[:2].lower() not in LANGUAGES:
        raise ValueError(f"fednb speaks {', '.join(LANGUAGES)}; not {language!r}")
    _language = None if language is None else normalize(language)
    return get_language()


def t(key: str, language: str | None = None, **fields: object) -> str:
    """The string ``key`` in ``language`` (default: the current one), with ``fields`` filled in."""
    en, es = MESSAGES[key]
    text = es if normalize(language or get_language()) == "es" else en
    return text.format(**fields) if fields else text


def label(group: str, value: str | None) -> str:
    """A column kind or isolation level in words (``label("kind", "categorical")``); unknown ones as they are."""
    key = f"{group}.{value}"
    return t(key) if key in MESSAGES else (value or "")


LAB_PREFIXES = ("lab.", "status.", "common.", "why.", "fed.", "kind.", "isolation.")


def table(language: str | None, prefixes: tuple[str, ...] = LAB_PREFIXES) -> dict[str, str]:
    """The strings under ``prefixes`` in one language: what the JupyterLab extension needs."""
    index = 1 if normalize(language) == "es" else 0
    return {k: v[index] for k, v in MESSAGES.items() if k.startswith(prefixes)}
