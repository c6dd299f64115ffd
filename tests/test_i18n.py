"""One table of user-facing strings, English and Spanish: complete, consistent, and really used."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from fednb import i18n

ROOT = Path(__file__).resolve().parents[1]


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("key", sorted(i18n.MESSAGES))
def test_every_string_has_both_languages_with_the_same_fields(key):
    en, es = i18n.MESSAGES[key]
    assert en.strip() and es.strip()
    assert _fields(en) == _fields(es), key


def test_language_from_locale_and_by_choice(monkeypatch):
    for var in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
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
