"""One table of user-facing strings, English and Spanish: complete, consistent, and really used."""

from __future__ import annotations

import re
import string
import sys
from pathlib import Path

import httpx
import pytest

from fednb import i18n
from fednb.locale import catalog, negotiate, translate
from tests.api_support import assert_clean_error, auth

ROOT = Path(__file__).resolve().parents[1]


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("key", sorted(i18n.MESSAGES))
def test_every_string_has_both_languages_with_the_same_fields(key):
    en, es = i18n.MESSAGES[key]
    assert en.strip() and es.strip()
    assert _fields(en) == _fields(es), key


def test_language_from_locale_and_by_choice(monkeypatch):
    for var in ("FEDNB_LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        monkeypatch.delenv(var, raising=False)
    i18n.set_language(None)
    assert i18n.get_language() == "en"
    monkeypatch.setenv("LANG", "es_BO.UTF-8")
    assert i18n.get_language() == "es" and i18n.t("status.denied") == "denegada"
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")  # LC_ALL wins; German is not spoken: English
    assert i18n.get_language() == "en"
    assert i18n.set_language("es-AR") == "es"
    assert i18n.t("tracker.all_final", total=3) == "los 3 dominio(s) finalizados"
    assert i18n.t("tracker.all_final", "en", total=3) == "all 3 domain(s) final"
    with pytest.raises(ValueError, match="en, es"):
        i18n.set_language("fr")
    i18n.set_language(None)


def test_the_lab_table_has_what_the_typescript_asks_for():
    keys = set()
    for ts in (ROOT / "extensions" / "fednb-jupyterlab" / "src").glob("*.ts"):
        keys |= set(re.findall(r"\btr\(\s*'([\w.]+)'", ts.read_text()))
    assert keys, "the extension's sources use tr('key')"
    for lang in ("en", "es"):
        missing = keys - set(i18n.table(lang))
        assert not missing, f"{lang}: {sorted(missing)}"


def test_python_code_asks_only_for_keys_that_exist():
    used = set()
    for py in list((ROOT / "fednb" / "widgets").glob("*.py")) + list((ROOT / "fednb" / "jupyter").glob("*.py")):
        used |= set(re.findall(r"""\bt\(\s*["']([\w.]+)["']""", py.read_text()))
        used |= set(re.findall(r"""ApiError\(\d+,\s*["']([\w.]+)["']""", py.read_text()))
    assert len(used) > 40
    assert not used - set(i18n.MESSAGES), sorted(used - set(i18n.MESSAGES))


# -- the domain's messages: gettext catalogs, chosen by Accept-Language ----------------------------

def _marked_messages() -> set[str]:
    """Every ``N_("...")`` in the domain's code, as Babel's extractor finds it."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from update_messages import extracted
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return {m.id for m in extracted() if m.id}


def test_every_marked_domain_message_has_a_spanish_translation_with_the_same_fields():
    marked = _marked_messages()
    assert len(marked) > 60, "the domain's refusals, limits and errors are marked with N_()"
    spanish = catalog.catalog("es")
    missing = sorted(marked - set(spanish))
    assert not missing, f"untranslated (run scripts/update_messages.py and translate): {missing}"
    for msgid in marked:
        assert _fields(msgid) == _fields(spanish[msgid]), (msgid, spanish[msgid])


def _sample(msgid: str) -> dict[str, int]:
    return {name: 7 for name in _fields(msgid)}


def _expected_spanish(msgid: str, msgstr: str) -> str:
    """msgstr with each field as the English text shows it (format specs applied, as the domain did)."""
    shown = {}
    for _literal, name, spec, conversion in string.Formatter().parse(msgid):
        if name:
            shown[name] = format(repr(7) if conversion == "r" else 7, spec or "")
    return "".join(lit + (shown[name] if name else "") for lit, name in catalog.fields(msgstr))


def test_every_message_the_domain_formats_is_read_back_and_written_in_spanish():
    """Each English text the code can produce maps back to its own entry, not to a look-alike."""
    for msgid, msgstr in catalog.catalog("es").items():
        english = msgid.format(**_sample(msgid))
        assert translate(english, "es") == _expected_spanish(msgid, msgstr), msgid
        assert translate(english, "en") == english


def test_reasons_inside_reasons_are_translated_and_unknown_text_stays_english():
    reason = ("its 1 largest contributions make up more than 50% of it (dominance rule)")
    text = (f"the mean of 'cost' cannot be released: {reason}, so it would reveal one row's value; "
            "widen the selection or use a column no row dominates")
    assert translate(text, "es") == ("no se puede publicar la media de 'cost': sus 1 mayores contribuciones suman "
                                     "más del 50% del total (regla de dominancia), así que revelaría el valor de una "
                                     "fila; amplíe la selección o use una columna que ninguna fila domine")
    assert translate("ValueError: my own words", "es") == "ValueError: my own words"


@pytest.mark.parametrize(("header", "language"), [
    (None, "en"), ("", "en"), ("es", "es"), ("es-ES,es;q=0.9,en;q=0.8", "es"), ("en-US,en;q=0.9,es;q=0.8", "en"),
    ("fr", "en"), ("fr-FR, es;q=0.5", "es"), ("es;q=0", "en"), ("es;q=abc", "en"), ("*", "en"), (",;,;q=", "en"),
])
def test_accept_language_is_negotiated_with_english_as_the_fallback(header, language):
    assert negotiate(header) == language


def _blocked_count(client: httpx.Client, headers: dict[str, str]) -> dict:
    """A count over three rows (the policy's minimum cohort is larger): blocked; then read in ``headers``' language."""
    body = {"dataset": "patients", "kind": "builtin", "name": "count",
            "args": {"where": [{"column": "age", "op": ">", "value": 94}]}}
    r = client.post("/v1/requests", json=body, params={"wait": 30})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    final = client.get(f"/v1/requests/{rid}", params={"wait": 30}).json()
    assert final["status"] == "blocked", final
    return client.get(f"/v1/requests/{rid}", headers=headers).json()


ENGLISH_COHORT = "number fewer than 10 (the domain's minimum cohort); widen the selection"
SPANISH_COHORT = "son menos de 10 (la cohorte mínima del dominio); amplíe la selección"


def test_a_blocked_query_reads_in_the_analysts_language_through_the_http_api(fresh_domain):
    with httpx.Client(base_url=fresh_domain.url, headers=auth(fresh_domain.token), timeout=60) as client:
        spanish = _blocked_count(client, {"Accept-Language": "es-ES,es;q=0.9"})
        assert spanish["reason"] == f"las filas seleccionadas {SPANISH_COHORT}", spanish["reason"]
        for header in ({}, {"Accept-Language": "en"}, {"Accept-Language": "fr-FR,fr;q=0.9"}):
            english = client.get(f"/v1/requests/{spanish['id']}", headers=header)
            assert english.json()["reason"] == f"the selected rows {ENGLISH_COHORT}", (header, english.text)
            assert "content-language" not in english.headers
        listed = client.get("/v1/requests", headers={"Accept-Language": "es"}).json()
        assert any(SPANISH_COHORT in (r.get("reason") or "") for r in listed), listed
        # the domain itself keeps English: its audit log does not change language with its readers
        assert ENGLISH_COHORT in fresh_domain.domain().request(spanish["id"]).reason


def test_refusals_and_limits_answer_in_spanish_and_stay_clean_errors(fresh_domain):
    es = {"Accept-Language": "es"}
    with httpx.Client(base_url=fresh_domain.url, timeout=60) as anonymous:
        r = anonymous.get("/v1/requests", headers=es)
        assert_clean_error(r, 401)
        assert r.json()["error"] == "este punto de acceso necesita un token: envíe 'Authorization: Bearer <token>'"
        assert r.headers["content-language"] == "es"
        r = anonymous.get("/v1/requests", headers={**es, **auth("not-a-token")})
        assert_clean_error(r, 401)
        assert r.json()["error"].startswith("el token no se conoce aquí; pida uno nuevo al propietario de"), r.text
    with httpx.Client(base_url=fresh_domain.url, headers=auth(fresh_domain.token), timeout=60) as client:
        r = client.get("/v1/requests/ffffffffffff", headers=es)
        assert_clean_error(r, 404)
        assert r.json()["error"].startswith("este dominio no tiene ninguna solicitud 'ffffffffffff' que usted pueda ver")
        r = client.post("/v1/requests", headers={**es, "content-type": "application/json"}, content=b"x" * 2_100_000)
        assert_clean_error(r, 413)
        assert r.json()["error"] == "el cuerpo de la petición supera 2,000,000 bytes", r.text
        r = client.post("/v1/requests", headers=es, json={"dataset": "patients", "kind": "builtin", "name": "count",
                                                         "args": {"where": [{"column": "nope", "op": ">", "value": 1}]}})
        assert_clean_error(r, 400)
        assert r.json()["error"] == "el conjunto de datos 'patients' no tiene la columna 'nope'", r.text
        r = client.get("/v1/nowhere", headers=es)
        assert_clean_error(r, 404)
        assert r.json()["error"] == "no existe ese punto de acceso; la API se describe en /openapi.json"


def test_the_analysts_client_sends_the_notebooks_language(fresh_domain):
    import fednb
    from fednb.errors import NotEnoughDomains

    fed = fednb.connect([fresh_domain.url], token=fresh_domain.token)
    try:
        fednb.set_language("es")
        with pytest.raises(NotEnoughDomains) as spanish:
            fed.dataset("patients").count(where="age > 94")
        assert str(spanish.value).startswith("0 dominio(s) dieron un resultado, pero se necesitan 1")
        assert (f"hospital-t: bloqueada por el control de divulgación: las filas seleccionadas {SPANISH_COHORT}"
                in str(spanish.value)), str(spanish.value)
        fednb.set_language("en")
        with pytest.raises(NotEnoughDomains) as english:
            fed.dataset("patients").count(where="age > 93")
        assert (f"hospital-t: blocked by disclosure control: the selected rows {ENGLISH_COHORT}"
                in str(english.value)), str(english.value)
    finally:
        fednb.set_language(None)
        fed.close()


# -- the JupyterLab panels: JupyterLab's own translation system ------------------------------------

def test_the_panels_bundle_is_what_the_table_says_and_jupyterlab_serves_it_with_the_language_pack():
    from jupyterlab_server.translation_utils import get_language_pack

    from fednb.locale import lab_bundle

    path = lab_bundle.bundle_path("es")
    assert path.read_text(encoding="utf-8") == lab_bundle.render("es"), "run scripts/update_messages.py"
    served, message = get_language_pack("es_ES")
    assert "jupyterlab" in served, f"the Spanish language pack is not installed: {message}"
    bundle = served[lab_bundle.DOMAIN]
    assert bundle[f"lab.owner.pending{lab_bundle.CONTEXT}Pending requests"] == ["Solicitudes pendientes"]
    assert bundle[f"fed.up{lab_bundle.CONTEXT}up"] == ["activo"]
    assert bundle[f"status.done{lab_bundle.CONTEXT}done"] == ["terminada"]
    # one English word, two Spanish genders: the key is the context
    assert bundle[f"status.approved{lab_bundle.CONTEXT}approved"] == ["aprobada"]
    assert bundle[f"lab.owner.mock.approved{lab_bundle.CONTEXT}approved"] == ["aprobado"]
    source = (ROOT / "extensions" / "fednb-jupyterlab" / "src" / "i18n.ts").read_text()
    assert "translator.load(DOMAIN)" in source and "trans._p(key, msgid)" in source


def test_spanish_widgets_name_column_kinds_and_isolation_levels_in_spanish():
    from fednb.widgets.federation import dataset_html, domains_html

    i18n.set_language("es")
    try:
        domains = domains_html([{"domain": "a", "url": "http://127.0.0.1:1", "up": True, "isolation": "strong",
                                 "version": "1"}])
        schema = dataset_html("patients", {"a": {"rows": 10, "columns": [
            {"name": "sex", "dtype": "object", "kind": "categorical", "levels": ["F", "M"]},
            {"name": "age", "dtype": "int64", "kind": "integer", "range": [18, 95]}]}})
    finally:
        i18n.set_language(None)
    assert ">fuerte<" in domains and ">activo<" in domains
    assert ">categórica<" in schema and ">entera<" in schema
    assert "categorical" not in schema and "strong" not in domains


def test_demo_lab_in_spanish_selects_the_language_pack_in_its_own_settings(tmp_path, monkeypatch):
    import json

    from fednb.demo.lab import SETTINGS, lab_command, lab_language

    monkeypatch.delenv("FEDNB_LANGUAGE", raising=False)
    assert lab_language(tmp_path, "es") is None  # the pack is installed (the jupyter extra)
    settings = tmp_path / SETTINGS / "@jupyterlab" / "translation-extension" / "plugin.jupyterlab-settings"
    assert json.loads(settings.read_text()) == {"locale": "es_ES"}
    assert i18n.get_language() == "es"  # the kernels and the server extension inherit it
    command = lab_command(tmp_path, lang="es", port=8899, open_browser=False)
    assert f"--LabApp.user_settings_dir={tmp_path / SETTINGS}" in command
    assert "/lab/tree/es/01-recorrido-analista.ipynb" in " ".join(command)
    assert lab_language(tmp_path, "en") is None  # the same folder serves English the next time
    assert json.loads(settings.read_text()) == {"locale": "en"}
    monkeypatch.setenv("FEDNB_LANGUAGE", "en")
