"""The whole review loop in a real browser: the analyst submits from a notebook; the owner, in
the review panel, denies one request with a reason and approves another; the analyst sees the
reason and the released result in the notebook's tracker widgets and in the federation panel,
without re-running a cell."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.ui.labpage import cell, open_lab, open_side_panel, outputs, run_cell, write_notebook

DENY_REASON = "Counts this small could identify patients"


def _submit(kind_name: str, args: str, description: str, var: str) -> str:
    return (f'{var} = fed.send(ds.clients, {{"dataset": "patients", "kind": "builtin", "name": "{kind_name}", '
            f'"args": {args}, "description": "{description}"}})\n{var}')


def test_owner_decides_in_the_review_panel_and_the_analyst_sees_it_live(page, lab, federation, screenshots):
    notebook = write_notebook(lab.root, "review.ipynb", [
        "import fednb\nfed = fednb.connect(profile='default')\nfed",
        "ds = fed.dataset('patients')\n" + _submit("count", "{}", "How many patients are there?", "count_req"),
        _submit("mean", '{"column": "age"}', "Mean age of the patients", "mean_req"),
    ])
    open_lab(page, lab, notebook)
    run_cell(page, 0)
    federation_view = outputs(page, 0).locator(".fednb-federation")
    expect(federation_view.locator(".fednb-domains")).to_contain_text("hospital-a")
    expect(federation_view.locator(".fednb-domains")).to_contain_text("hospital-b")
    expect(federation_view.locator(".fednb-schema")).to_contain_text("bmi")
    expect(federation_view.locator(".fednb-mock")).to_be_visible()
    cell(page, 0).screenshot(path=screenshots / "notebook-federation-widget.png")

    run_cell(page, 1)
    run_cell(page, 2)
    for i in (1, 2):
        expect(outputs(page, i).locator(".fednb-state-pending")).to_have_count(2)

    review = open_side_panel(page, "fednb-review")
    pending = review.locator(".fednb-pending .fednb-owner-request")
    counts = pending.filter(has_text="How many patients are there?")
    means = pending.filter(has_text="Mean age of the patients")
    expect(counts.filter(has_text="builtin:count")).to_have_count(2)
    # each dataset's mock, as analysts are served it, with the report's utility and risk figures
    mocks = review.locator(".fednb-mocks .fednb-mock-row")
    expect(mocks).to_have_count(2)
    expect(mocks.filter(has_text="hospital-a · patients")).to_contain_text("tier 0")
    expect(mocks.first).to_contain_text("closer to real")
    expect(means.filter(has_text="builtin:mean")).to_have_count(2)
    page.screenshot(path=screenshots / "owner-review-panel-pending.png")

    counts.filter(has_text="hospital-a").click()
    tab = page.locator(".fednb-review-tab:visible")
    expect(tab.locator("h2")).to_contain_text("builtin:count")
    expect(tab).to_contain_text("alice")
    tab.locator(".fednb-deny").click()  # without a reason: refused in the page, nothing sent
    expect(tab.locator(".fednb-error")).to_contain_text("reason")
    tab.locator(".fednb-reason-input").fill(DENY_REASON)
    tab.locator(".fednb-deny").click()
    expect(tab.locator("h2 .fednb-badge")).to_have_text("denied")
    expect(tab.locator(".fednb-decision")).to_have_text(DENY_REASON)
    page.screenshot(path=screenshots / "owner-review-tab-denied-with-reason.png")

    for domain in ("hospital-a", "hospital-b"):
        means.filter(has_text=domain).click()
        tab = page.locator(".fednb-review-tab:visible")
        expect(tab).to_contain_text(domain)
        tab.locator(".fednb-reason-input").fill("an average over hundreds of patients")
        tab.locator(".fednb-approve").click()
        expect(tab.locator("h2 .fednb-badge")).not_to_have_text("pending review")

    expect(review.locator(".fednb-recent")).to_contain_text(DENY_REASON)

    # the notebook, untouched since: the trackers followed the decisions by themselves
    page.get_by_role("tab", name="review.ipynb").click()
    count_out, mean_out = outputs(page, 1), outputs(page, 2)
    expect(count_out.locator(".fednb-state-denied")).to_have_count(1, timeout=60_000)
    expect(count_out).to_contain_text(f"denied by the owner: {DENY_REASON}")
    expect(mean_out.locator(".fednb-state-done")).to_have_count(2, timeout=60_000)
    expect(mean_out).to_contain_text("mean")
    expect(mean_out).to_contain_text("all 2 domain(s) final")
    page.screenshot(path=screenshots / "notebook-trackers-denied-and-done.png")

    analyst = open_side_panel(page, "fednb-analyst")
    count_entry = analyst.locator(".fednb-submission", has_text="How many patients are there?")
    expect(count_entry.locator('.fednb-part[data-domain="hospital-a"] .fednb-reason')).to_contain_text(DENY_REASON)
    expect(count_entry.locator('.fednb-part[data-domain="hospital-b"]')).to_have_attribute("data-status", "pending")
    mean_entry = analyst.locator(".fednb-submission", has_text="Mean age of the patients")
    expect(mean_entry.locator('.fednb-part[data-status="done"]')).to_have_count(2, timeout=60_000)
    expect(mean_entry.locator(".fednb-result").first).to_contain_text("mean")
    expect(analyst.locator(".fednb-domains")).to_contain_text("hospital-b")
    page.screenshot(path=screenshots / "analyst-panel-denial-and-result.png")
