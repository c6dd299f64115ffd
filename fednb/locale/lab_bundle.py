"""The JupyterLab panels' Spanish, as a language bundle JupyterLab's own translation system reads.

The panels call ``trans._p(key, english)`` on the ``fednb_jupyterlab`` bundle
(``ITranslator.load``), so the lab's language setting (Settings → Language, or the
``@jupyterlab/translation-extension:plugin`` ``locale``) decides, as for JupyterLab's own menus.
jupyterlab_server finds this bundle through the ``jupyterlab.locale`` entry point (``fednb_jupyterlab =
fednb``: ``fednb/locale/<locale>/LC_MESSAGES/fednb_jupyterlab.json``) and serves it merged with the
installed language pack of that locale (jupyterlab_server ``translation_utils.get_language_pack``).
The format is Jed's JSON, JupyterLab's: ``{"context\\u0004msgid": [msgstr]}`` with a ``""`` header. The
strings come from the one en/es table, :data:`fednb.i18n.MESSAGES`; the i18n key is the context, so
one English word can have two Spanish genders.
"""

from __future__ import annotations

import json
from pathlib import Path

from fednb import i18n

DOMAIN = "fednb_jupyterlab"
LOCALES = {"es": "es_ES"}  # the language packs on PyPI are per country; es_ES is jupyterlab-language-pack-es-ES
CONTEXT = "\u0004"


def bundle_path(language: str) -> Path:
    return Path(__file__).resolve().parent / LOCALES[language] / "LC_MESSAGES" / f"{DOMAIN}.json"


def bundle(language: str) -> dict:
    index = i18n.LANGUAGES.index(language)
    header = {"domain": DOMAIN, "language": LOCALES[language].replace("_", "-"),
              "plural_forms": "nplurals=2; plural=(n != 1);", "version": "fednb"}
    entries = {f"{key}{CONTEXT}{texts[0]}": [texts[index]]
               for key, texts in sorted(i18n.MESSAGES.items()) if key.startswith(i18n.LAB_PREFIXES)}
    return {"": header, **entries}


def render(language: str) -> str:
    return json.dumps(bundle(language), ensure_ascii=False, indent=1, sort_keys=False) + "\n"
