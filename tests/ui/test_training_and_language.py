"""The live training dashboard fed from a running kernel, and fednb's Jupyter face in Spanish."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.ui.labpage import cell, open_lab, open_side_panel, outputs, run_cell, start_cell, write_notebook

FEED = """\
import pathlib, time
rounds, domains = 8, ["hospital-a", "hospital-b", "ylb-uyuni"]
gate = pathlib.Path("GATE")  # the test opens it once it has seen round 2: no race with a slow machine
for r in range(1, rounds + 1):
    while r == 3 and not gate.exists():
        time.sleep(0.05)
    for i, d in enumerate(domains):
        status = "dropped" if (r, d) == (4, "hospital-b") else "timeout" if (r, d) == (6, "ylb-uyuni") else "ok"
        ok = status == "ok"
        dash.update({"round": r, "domain": d, "loss": 1.2 / r + 0.05 * i if ok else None,
                     "accuracy": 0.55 + 0.04 * r - 0.01 * i if ok else None, "n": 400 + 100 * i, "status": status})
    dash.update({"round": r, "domain": "global", "loss": 1.1 / r, "accuracy": 0.56 + 0.04 * r, "n": 1500,
                 "status": "ok"})
    time.sleep(0.2)
"""


def _points(figure) -> int:
    return figure.locator(".scatterlayer .trace .points path").count()


def test_training_dashboard_updates_live_from_the_kernel(page, lab, screenshots):
    notebook = write_notebook(lab.root, "training.ipynb", [
        "from fednb.widgets import TrainingDashboard\ndash = TrainingDashboard('FedAvg on patients')\ndash",
        FEED.replace("GATE", str(lab.root / "training.gate")),
    ])
    open_lab(page, lab, notebook)
    run_cell(page, 0)
    board = outputs(page, 0).locator(".fednb-training")
    figure = board.locator(".js-plotly-plot")
    expect(figure).to_have_count(1)
    expect(figure.locator(".gtitle, .annotation-text")).to_contain_text(["Loss", "Accuracy"], timeout=60_000)
    expect(board).to_contain_text("waiting for the first round")

    start_cell(page, 1)  # no waiting for its end: the plots must grow while it runs
    expect(board.locator(".fednb-training-status")).to_contain_text("round 2:", timeout=60_000)
    early = _points(figure)  # the kernel waits at round 3 until the gate opens
    (lab.root / "training.gate").touch()
    expect(board.locator(".fednb-training-status")).to_contain_text("round 8: 3 of 3 domain(s) answered",
                                                                      timeout=60_000)
    late = _points(figure)
    assert 0 < early < late, (early, late)  # the plot grew while the cell was still running
    expect(board).to_contain_text("Drop-outs: round 4 hospital-b (dropped out); round 6 ylb-uyuni (timed out)")
    expect(figure.locator(".legendtext")).to_contain_text(["dropped out", "global", "hospital-a"], timeout=5_000)
    expect(board.locator(".fednb-training-status")).to_contain_text("global loss 0.1375")
    page.screenshot(path=screenshots / "training-dashboard-live.png")


def test_pooled_results_show_as_tables_and_plots(page, lab, screenshots):
    notebook = write_notebook(lab.root, "results.ipynb", [
        "import fednb\npatients = fednb.connect(profile='default').dataset('patients')\n"
        "patients.histogram('bmi', [15, 20, 25, 30, 35, 40])",
        "patients.crosstab('smoker', 'readmitted')",
    ])
    open_lab(page, lab, notebook)
    run_cell(page, 0)
    run_cell(page, 1)
    histogram = outputs(page, 0).locator(".fednb-result")
    expect(histogram).to_contain_text("histogram of bmi over 2 domain(s)")
    expect(histogram.locator(".js-plotly-plot .bars .point")).to_have_count(7)  # below, 5 bins, above
    expect(histogram.locator(".fednb-histogram")).to_contain_text("[25, 30)")
    expect(histogram.locator(".fednb-by-domain")).to_contain_text("hospital-b")
    crosstab = outputs(page, 1).locator(".fednb-result")
    expect(crosstab.locator(".js-plotly-plot .hm")).to_have_count(1)
    expect(crosstab.locator("table.fednb-frame")).to_contain_text("readmitted")
    expect(crosstab.locator("table.fednb-frame")).to_contain_text("smoker")
    cell(page, 0).screenshot(path=screenshots / "notebook-pooled-histogram.png")
    cell(page, 1).screenshot(path=screenshots / "notebook-pooled-crosstab.png")


def test_spanish_lab_shows_spanish_panels_and_widgets(page, lab, federation, screenshots):
    settings = lab.root.parent / "settings" / "@jupyterlab" / "translation-extension" / "plugin.jupyterlab-settings"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"locale": "es_ES"}))
    try:
        notebook = write_notebook(lab.root, "espanol.ipynb", [
            "import fednb\nfednb.set_language('es')\nfed = fednb.connect(profile='default')\n"
            "ds = fed.dataset('patients')\nreq = fed.send(ds.clients, {'dataset': 'patients', 'kind': 'builtin', "
            "'name': 'count', 'args': {'where': [{'column': 'age', 'op': '>=', 'value': 30}]}, "
            "'description': '¿Cuántos pacientes?'})\n"
            "ages = fed.send(ds.clients, {'dataset': 'patients', 'kind': 'function', 'name': 'ages', "
            "'code': 'def ages(df):\\n    return fednb.stat(df.age)\\n', 'limits': {'columns': ['age']}, "
            "'description': 'Edad media, solo age'})\nreq",
        ])
        open_lab(page, lab, notebook)
        run_cell(page, 0)
        tracker = outputs(page, 0).locator(".fednb-tracker")
        expect(tracker).to_contain_text("Agregado count sobre patients")
        expect(tracker.locator(".fednb-state-pending")).to_have_text(["pendiente de revisión"] * 2)
        analyst = open_side_panel(page, "fednb-analyst")
        expect(analyst.locator("h2")).to_have_text("Federación")
        expect(analyst.locator("h3").nth(2)).to_have_text("Mis solicitudes")
        entry = analyst.locator(".fednb-submission", has_text="¿Cuántos pacientes?")
        expect(entry.locator(".fednb-badge").first).to_have_text("pendiente de revisión")
        page.screenshot(path=screenshots / "spanish-analyst-panel-and-tracker.png")
        review = open_side_panel(page, "fednb-review")
        expect(review.locator("h3").first).to_have_text("Solicitudes pendientes")
        review.locator(".fednb-owner-request", has_text="¿Cuántos pacientes?").filter(has_text="hospital-b").click()
        tab = page.locator(".fednb-review-tab:visible")
        expect(tab.locator(".fednb-deny")).to_have_text("Denegar")
        tab.locator(".fednb-reason-input").fill("Prueba en español")
        tab.locator(".fednb-deny").click()
        expect(tab.locator("h2 .fednb-badge")).to_have_text("denegada")
        # a function's review names the columns it declared, in Spanish
        review.locator(".fednb-owner-request", has_text="Edad media, solo age").filter(has_text="hospital-a").click()
        expect(page.locator(".fednb-review-tab:visible .fednb-facts")).to_contain_text("Columnas que puede leerage")
        page.get_by_role("tab", name="espanol.ipynb").click()
        expect(tracker).to_contain_text("denegada por el propietario: Prueba en español", timeout=60_000)
    finally:
        settings.unlink()
