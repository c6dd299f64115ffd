"""Results a person can read, in a real browser: the tracker under a cell and the analyst's panel
show a histogram, a crosstab and a custom table as small tables (not one flattened line of raw
dicts), domain names on one line; the screenshots in docs/screenshots show the same page."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.ui.labpage import cell, open_lab, open_side_panel, outputs, run_cell, write_notebook

BMI_BY_SEX = ('import fednb\n\ndef bmi_by_sex(df):\n    """Mean BMI by sex."""\n'
              '    return fednb.table(df, by="sex", value="bmi", agg="mean")\n')


def test_tracker_and_panel_show_results_as_tables(page, lab, federation, screenshots):
    notebook = write_notebook(lab.root, "readable.ipynb", [
        "import fednb\nfed = fednb.connect(profile='default')\nds = fed.dataset('patients')",
        "hist = ds.histogram('age', bins=[20, 40, 60, 80])\nhist.request",
        "tab = ds.crosstab('sex', 'smoker')\ntab.request",
        f"bmi = ds.submit(fednb.function({BMI_BY_SEX!r}), description='Mean BMI by sex')\nbmi",
        "ds.histogram('age', bins=[20, 40], where='age > 94')  # too few people: blocked",
    ])
    open_lab(page, lab, notebook)
    for i in range(4):
        run_cell(page, i, timeout=120_000)
    pending = {r["domain"]: r for r in lab.api("GET", "/fednb/api/owner/requests").json()["pending"]
               if r["name"] == "bmi_by_sex"}
    for domain, row in pending.items():
        approved = lab.api("POST", f"/fednb/api/owner/requests/{domain}/{row['id']}/approve",
                           json={"reason": "group means"})
        assert approved.status_code == 200, approved.text
    tracker = outputs(page, 3).locator(".fednb-tracker")
    expect(tracker.locator(".fednb-state-done")).to_have_count(2, timeout=120_000)
    histogram = outputs(page, 1).locator(".fednb-tracker")
    expect(histogram.locator(".fednb-state-done")).to_have_count(2)

    # a blocked statistic: one line naming each domain, no traceback of fednb's frames
    run_cell(page, 4, timeout=120_000)
    error = outputs(page, 4)
    expect(error).to_contain_text("NotEnoughDomains: 0 of the 1 domain(s) needed gave a result")
    expect(error).to_contain_text("hospital-a: blocked by disclosure control")
    expect(error).not_to_contain_text("Traceback")
    expect(error).not_to_contain_text(".py")

    page.set_viewport_size({"width": 1100, "height": 900})
    cell(page, 4).screenshot(path=screenshots / "notebook-blocked-one-line.png")
    cell(page, 1).screenshot(path=screenshots / "tracker-histogram.png")
    cell(page, 2).screenshot(path=screenshots / "tracker-crosstab.png")
    cell(page, 3).screenshot(path=screenshots / "tracker-custom-table.png")

    panel = open_side_panel(page, "fednb-analyst")
    submission = panel.locator(".fednb-submission", has_text="Mean BMI by sex")
    expect(submission.locator(".fednb-part-done")).to_have_count(2, timeout=60_000)
    expect(panel.locator(".fednb-submission").filter(has_text="60.0, 80.0").locator(".fednb-result")).to_have_count(2)
    panel.screenshot(path=screenshots / "analyst-panel-results.png")

    # the tracker: one table of bins per domain, numbers, no raw dict
    grids = histogram.locator("table.fednb-grid")
    expect(grids).to_have_count(2)
    expect(grids.first.locator("tbody tr")).to_have_count(5)
    expect(grids.first).to_contain_text("[20, 40)")
    expect(histogram).not_to_contain_text("counts")
    # the panel: the same tables, with the frame's index as a column; domain names on one line
    custom = submission.locator(".fednb-part-done").first.locator("table.fednb-grid")
    expect(custom.locator("thead th")).to_have_text(["sex", "n", "mean"])
    expect(custom.locator("tbody tr")).to_have_count(2)
    histogram_panel = panel.locator(".fednb-submission").filter(has_text="60.0, 80.0")
    expect(histogram_panel.locator("table.fednb-grid").first).to_contain_text("[−∞, 20)")
    expect(histogram_panel).not_to_contain_text("counts")
    name = panel.locator(".fednb-part > .fednb-name").first
    assert name.evaluate("e => getComputedStyle(e).whiteSpace") == "nowrap"

    # the owner's review tab of a decided request shows what the domain released, as the same table
    review = open_side_panel(page, "fednb-review")
    review.locator(".fednb-owner-request", has_text="Mean BMI by sex").filter(has_text="hospital-a").first.click()
    tab = page.locator(".fednb-review-tab:visible")
    expect(tab.locator("table.fednb-grid thead th")).to_have_text(["sex", "n", "mean"], timeout=60_000)


def test_owner_approves_on_all_their_domains_from_the_review_panel(page, lab, federation, screenshots):
    import fednb

    fed = fednb.connect([d.url for d in federation.domains], token=federation.token)
    code = "import fednb\n\ndef mean_bmi(df):\n    return fednb.stat(df.bmi)\n"
    req = fed.dataset("patients").submit(fednb.function(code), description="Mean BMI, approve everywhere")
    fed.close()
    ids = {p.domain: p.id for p in req.parts}
    page.goto(f"{lab.url}/lab?reset&token={lab.token}")  # a fresh layout: no side panel left open
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=60_000)
    review = open_side_panel(page, "fednb-review")
    review.locator(".fednb-pending .fednb-owner-request", has_text="Mean BMI, approve everywhere") \
        .filter(has_text="hospital-a").click()
    tab = page.locator(".fednb-review-tab:visible")
    tab.locator(".fednb-reason-input").fill("one mean, read once")
    tab.locator(".fednb-approve-all").click()
    outcomes = tab.locator(".fednb-approve-all-outcomes .fednb-outcome-approved")
    expect(outcomes).to_have_count(2, timeout=60_000)
    expect(outcomes).to_contain_text([f"hospital-a: approved {ids['hospital-a']}",
                                      f"hospital-b: approved {ids['hospital-b']}"])
    tab.screenshot(path=screenshots / "owner-approve-on-all-domains.png")
    for live in federation.domains:
        d = live.domain()
        try:
            r = d.request(ids[live.name])
            assert r.status != "pending"
            assert [e.payload["reason"] for e in d.audit_entries()
                    if e.action == "approve" and e.object_id == r.id] == ["one mean, read once"]
        finally:
            d.close()
