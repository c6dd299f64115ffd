"""A Spanish run of the tour in a real JupyterLab: no English left on what a Spanish analyst reads.

The lab's language is set the way ``fednb demo --lab --lang es`` sets it (the translation plugin's
``locale: es_ES``, served with JupyterLab's Spanish language pack), and the kernel says
``fednb.set_language("es")``. Then every text fednb shows (both panels, the widgets' output, a
domain's refusal of a blocked query) is compared with everything fednb could have said in English:
the English side of the en/es table (``fednb.i18n.MESSAGES``) and the domain catalog's msgids
(``fednb/locale/es/LC_MESSAGES/fednb.po``). Column names, dataset names, built-in names and numbers
are the analyst's own words and are not checked. Screenshots: artifacts/screenshots/es/.
"""

from __future__ import annotations

import json
import re
import string

import pytest
from playwright.sync_api import expect

from fednb import i18n
from fednb.locale import catalog
from fednb.models import BUILTINS
from tests.ui.labpage import cell, open_lab, open_side_panel, outputs, run_cell, write_notebook

TOUR = [
    "import fednb\nfednb.set_language('es')\nfed = fednb.connect(profile='default')\nfed",
    "patients = fed.dataset('patients')\npatients.histogram('bmi', [15, 20, 25, 30, 35, 40])",
    "try:\n    patients.histogram('bmi', [15, 25, 40], where='age > 94')\n"
    "except fednb.errors.FednbError as refusal:\n    print(refusal)",
    "req = fed.send(patients.clients, {'dataset': 'patients', 'kind': 'builtin', 'name': 'count', "
    "'args': {'where': [{'column': 'age', 'op': '>=', 'value': 40}]}, 'description': 'Pacientes de 40 o más'})\nreq",
    # a released histogram as tables under the tracker: more bins than a table shows, small cells hidden
    # (a column the other lab tests leave alone: cells a few rows off theirs would be a differencing
    # attack, and rightly blocked)
    "presion = patients.histogram('systolic_bp', bins=list(range(80, 201, 5)))\npresion.request",
]


def _fragments(template: str) -> list[str]:
    """The literal pieces of a message template that are English sentences (two words or more)."""
    pieces = [part for literal, *_ in string.Formatter().parse(template) for part in re.split(r"[;:()]", literal)]
    return [p.strip(" .,") for p in pieces if len(re.findall(r"[A-Za-z']{2,}", p)) >= 2]


def english_texts() -> tuple[set[str], set[str]]:
    """(phrases, single words) fednb says in English and says otherwise in Spanish."""
    phrases, words = set(), set()
    for en, es in i18n.MESSAGES.values():
        if en == es:
            continue
        if "{" in en:
            phrases.update(_fragments(en))
        elif len(en.split()) >= 2:
            phrases.add(en.strip(" .…"))
        elif en.isalpha() and en.lower() != es.lower():
            words.add(en)
    for msgid, msgstr in catalog.catalog("es").items():
        if msgid != msgstr:
            phrases.update(_fragments(msgid))
    spanish = " ".join(es for _, es in i18n.MESSAGES.values()) + " " + " ".join(catalog.catalog("es").values())
    # what the Spanish says too is a name, not English: "mock", "approve-mock", "min_domains="
    words = {w for w in words if not re.search(rf"\b{re.escape(w)}\b", spanish)}
    phrases = {p for p in phrases if p not in spanish}
    words -= set(BUILTINS)  # "count" is the built-in's name in the API, in both languages
    return phrases, words


def english_in(text: str) -> list[str]:
    phrases, words = english_texts()
    found = sorted(p for p in phrases if p in text)
    found += sorted(w for w in words if re.search(rf"(?<![\w'-]){re.escape(w)}(?![\w'-])", text))
    return found


@pytest.fixture(scope="module")
def spanish_lab(lab):
    """The lab in Spanish (the translation plugin's locale, as ``fednb demo --lab --lang es`` writes
    it), back to English after this module."""
    settings = lab.root.parent / "settings" / "@jupyterlab" / "translation-extension" / "plugin.jupyterlab-settings"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"locale": "es_ES"}))
    yield lab
    settings.unlink()


def test_the_english_list_knows_the_words_that_stayed_english_before():
    phrases, words = english_texts()
    assert {"Pending requests", "My requests", "the domain's minimum cohort"} <= phrases | words
    assert {"up", "done", "categorical", "strong"} <= words
    assert {"more bins", "suppressed cells", "Rows below", "noise added"} <= phrases  # the released tables'
    assert {"Count", "Bin", "Edge", "Value"} <= words
    assert english_in("Solicitudes pendientes · activo · terminada") == []
    assert english_in("Pending requests · up") == ["Pending requests", "up"]


def test_a_spanish_run_of_the_tour_shows_no_english(page, spanish_lab, federation, screenshots):
    shots = screenshots / "es"
    shots.mkdir(exist_ok=True)
    notebook = write_notebook(spanish_lab.root, "recorrido.ipynb", TOUR)
    open_lab(page, spanish_lab, notebook)
    menus = page.locator("#jp-menu-panel, .jp-MenuBar").first
    for spanish_menu in ("Archivo", "Editar", "Ver", "Configuración", "Ayuda"):
        expect(menus).to_contain_text(spanish_menu)
    # "Run", "Kernel" and "Tabs" the language pack itself leaves in English (jupyterlab-language-pack-es-ES 4.5)
    assert not re.search(r"\b(File|Edit|View|Settings|Help)\b", menus.inner_text()), menus.inner_text()

    for index in range(len(TOUR)):
        run_cell(page, index, timeout=120_000)
    view = outputs(page, 0).locator(".fednb-federation")
    expect(view.locator(".fednb-domains")).to_contain_text("activo")
    expect(view.locator(".fednb-schema")).to_contain_text("categórica", timeout=60_000)
    expect(view).to_contain_text("Vista del mock", timeout=60_000)
    result = outputs(page, 1).locator(".fednb-result")
    expect(result).to_contain_text("sobre 2 dominio(s)", timeout=60_000)
    expect(result.locator(".fednb-by-domain")).to_contain_text("hospital-b")
    blocked = outputs(page, 2)
    expect(blocked).to_contain_text("bloqueada por el control de divulgación: las filas seleccionadas son menos "
                                    "de 10 (la cohorte mínima del dominio); amplíe la selección", timeout=60_000)
    tracker = outputs(page, 3).locator(".fednb-tracker")
    expect(tracker).to_contain_text("Agregado count sobre patients")
    expect(tracker.locator(".fednb-state-pending")).to_have_text(["pendiente de revisión"] * 2)
    result.screenshot(path=shots / "result-histogram.png")
    cell(page, 2).screenshot(path=shots / "blocked-query.png")

    # a released histogram as the tracker's tables: headers, the hidden cells' caption and the note
    # of the bins a table leaves out, all in Spanish; the panels below show the same tables
    ages = outputs(page, 4).locator(".fednb-tracker")
    expect(ages.locator(".fednb-state-done")).to_have_count(2, timeout=120_000)
    expect(ages.locator("table.fednb-grid").first.locator("thead th")).to_have_text(["Intervalo", "Recuento"])
    expect(ages).to_contain_text("intervalos más")
    expect(ages).to_contain_text("celdas suprimidas")
    ages.screenshot(path=shots / "tracker-histogram-tables.png")

    analyst = open_side_panel(page, "fednb-analyst")
    expect(analyst.locator("h2")).to_have_text("Federación")
    expect(analyst.locator(".fednb-submission", has_text="Pacientes de 40 o más")).to_have_count(1, timeout=60_000)
    expect(analyst.locator(".fednb-domain").first).to_contain_text("activo")
    page.screenshot(path=shots / "analyst-panel-and-notebook.png")
    released = analyst.locator(".fednb-submission").filter(has_text="195.0, 200.0")
    expect(released.locator(".fednb-part-done")).to_have_count(2, timeout=60_000)
    expect(released.locator("table.fednb-grid").first.locator("thead th")).to_have_text(["Intervalo", "Recuento"])
    expect(released).to_contain_text("intervalos más")
    review = open_side_panel(page, "fednb-review")
    expect(review.locator("h3").first).to_have_text("Solicitudes pendientes")
    expect(review.locator(".fednb-owner-request", has_text="Pacientes de 40 o más")).to_have_count(2, timeout=60_000)
    page.screenshot(path=shots / "review-panel.png")
    # the owner of hospital-b approves the count; its review tab then shows the released value as a table
    (row,) = [r for r in spanish_lab.api("GET", "/fednb/api/owner/requests").json()["pending"]
              if r["domain"] == "hospital-b" and r["description"] == "Pacientes de 40 o más"]
    approved = spanish_lab.api("POST", f"/fednb/api/owner/requests/hospital-b/{row['id']}/approve",
                               json={"reason": "recuento"})
    assert approved.status_code == 200, approved.text
    expect(tracker.locator(".fednb-state-done")).to_have_count(1, timeout=120_000)
    review.locator(f".fednb-owner-request[data-id='{row['id']}']").click()
    decided = page.locator(".fednb-review-tab:visible")
    expect(decided).to_contain_text("Lo que el dominio publicó", timeout=60_000)
    expect(decided.locator("table.fednb-grid").first.locator("thead th")).to_have_text(["", "Valor"])
    decided.screenshot(path=shots / "review-tab-released.png")

    read = {"analyst panel": analyst.inner_text(), "review panel": review.inner_text(),
            "review tab": decided.inner_text(),
            **{f"output of cell {i}": outputs(page, i).all_inner_texts() for i in range(len(TOUR))}}
    english = {where: english_in(text if isinstance(text, str) else "\n".join(text)) for where, text in read.items()}
    assert not any(english.values()), {where: found for where, found in english.items() if found}
