"""Refresh the domain's Spanish catalog (fednb/locale/es/LC_MESSAGES/fednb.po) from the code, and
the JupyterLab panels' bundle (fednb/locale/es_ES/LC_MESSAGES/fednb_jupyterlab.json) from fednb/i18n.py.

Extracts every ``N_("...")`` under fednb/domain with Babel, adds new msgids untranslated, keeps the
existing translations, and marks msgids no longer used obsolete. Run it after marking a message, then
translate the new entries (tests/test_i18n.py fails while one is missing).

    python scripts/update_messages.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fednb.locale import lab_bundle  # noqa: E402
from fednb.locale.catalog import DOMAIN, po_path  # noqa: E402

SOURCES = ROOT / "fednb" / "domain"


def extracted() -> Catalog:
    """The template: every marked message in the domain's code, with where it is."""
    template = Catalog(domain=DOMAIN, project="fednb", msgid_bugs_address="", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
            SOURCES, method_map=[("**.py", "python")], keywords={"N_": None}):
        where = (str(Path("fednb/domain") / filename), lineno)
        template.add(message, locations=[where], auto_comments=comments, context=context,
                     flags=("python-brace-format",) if "{" in message else ())
    return template


def main() -> None:
    path = po_path("es")
    with path.open("rb") as fh:
        catalog = read_po(fh, locale="es", domain=DOMAIN)
    template = extracted()
    template.creation_date = catalog.creation_date  # a date that moves on every run only makes merges conflict
    catalog.update(template, no_fuzzy_matching=True)
    with path.open("wb") as fh:
        write_po(fh, catalog, width=100, no_location=True, include_previous=False)  # no line numbers: no merge churn
    missing = [m.id for m in catalog if m.id and not m.string]
    print(f"{path.relative_to(ROOT)}: {len(catalog)} messages, {len(missing)} to translate")
    lab = lab_bundle.bundle_path("es")
    lab.parent.mkdir(parents=True, exist_ok=True)
    lab.write_text(lab_bundle.render("es"), encoding="utf-8")
    print(f"{lab.relative_to(ROOT)}: {len(lab_bundle.bundle('es')) - 1} strings")


if __name__ == "__main__":
    main()
