"""Authoring in the notebook: ``%%fednb submit`` and the "Submit to federation…" command send a
cell's function for review; the owner sees it with its code highlighted and the diff against the
version they approved before; the tracker under the cell follows the decision."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.ui.labpage import cell, open_lab, open_side_panel, outputs, run_cell, write_notebook

V1 = 'def bmi_by_sex(df):\n    """Mean BMI by sex."""\n    return df.groupby("sex").bmi.mean()'
V2 = ('def bmi_by_sex(df):\n    """Mean BMI by sex, with the group sizes."""\n    g = df.groupby("sex").bmi\n'
      '    return {"mean": g.mean(), "n": g.size()}')


def test_magic_and_submit_command_reach_the_owner_with_code_and_diff(page, lab, federation, screenshots):
    notebook = write_notebook(lab.root, "submit.ipynb", [
        "%load_ext fednb\nimport fednb\nfed = fednb.connect(profile='default')",
        f'%%fednb submit patients --description "BMI by sex, first version" --as v1\n'
        f'@fednb.function(columns=["sex", "bmi"])\n{V1}',
        V2,
    ])
    open_lab(page, lab, notebook)
    run_cell(page, 0)
    run_cell(page, 1)
    tracker = outputs(page, 1).locator(".fednb-tracker")
    expect(tracker.locator(".fednb-state-pending")).to_have_count(2)
    expect(tracker).to_contain_text("bmi_by_sex")

    # the owner approved the first version (on hospital-a) some time ago
    v1 = {r["domain"]: r for r in lab.api("GET", "/fednb/api/owner/requests").json()["pending"]
          if r["name"] == "bmi_by_sex"}
    approved = lab.api("POST", f"/fednb/api/owner/requests/hospital-a/{v1['hospital-a']['id']}/approve",
                       json={"reason": "group means only"})
    assert approved.status_code == 200, approved.text
    expect(tracker.locator('.fednb-state-pending')).to_have_count(1, timeout=60_000)

    # the second version goes through the cell's context menu
    cell(page, 2).locator(".jp-InputArea-editor").click(button="right")
    page.locator(".lm-Menu-item", has_text="Submit to federation…").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog.locator(".fednb-submit-dataset")).to_contain_text("patients (hospital-a, hospital-b)")
    dialog.locator(".fednb-submit-description").fill("BMI by sex with group sizes")
    page.screenshot(path=screenshots / "submit-to-federation-dialog.png")
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    second = outputs(page, 2).locator(".fednb-tracker")
    expect(second.locator(".fednb-state-pending")).to_have_count(2, timeout=60_000)
    expect(second).to_contain_text("BMI by sex with group sizes")
    assert cell(page, 2).locator(".jp-cell-toolbar [data-command='fednb:submit-cell']").count() == 1
    cell(page, 2).screenshot(path=screenshots / "submit-tracker-under-cell.png")

    review = open_side_panel(page, "fednb-review")
    row = review.locator(".fednb-pending .fednb-owner-request",
                         has_text="BMI by sex with group sizes").filter(has_text="hospital-a")
    row.click()
    tab = page.locator(".fednb-review-tab:visible")
    expect(tab.locator(".fednb-code")).to_contain_text('return {"mean": g.mean(), "n": g.size()}')
    expect(tab.locator(".fednb-code span").first).to_be_visible()  # highlighted tokens, not plain text
    expect(tab.locator(".fednb-gutter")).to_have_text("1\n2\n3\n4")
    # what the domain will check on this code's output, in the owner's words (the default policy: checked)
    expect(tab.locator(".fednb-facts")).to_contain_text("Output check")
    expect(tab.locator(".fednb-facts")).to_contain_text("values the domain verifies row by row")
    # which columns the job may load (part of the approval): this version declares none
    expect(tab.locator(".fednb-facts")).to_contain_text("Columns it may readevery column (it declares none)")
    diff = tab.locator(".fednb-diff")
    expect(diff.locator(".fednb-diff-del")).to_contain_text(['"""Mean BMI by sex."""',
                                                            'return df.groupby("sex").bmi.mean()'])
    expect(diff.locator(".fednb-diff-add")).to_contain_text(['"""Mean BMI by sex, with the group sizes."""',
                                                            'g = df.groupby("sex").bmi',
                                                            'return {"mean": g.mean(), "n": g.size()}'])
    expect(tab.locator(".fednb-diff-block h3")).to_contain_text(v1["hospital-a"]["id"])
    page.screenshot(path=screenshots / "owner-review-code-and-diff.png")

    tab.locator(".fednb-reason-input").fill("Group sizes under 10 must be suppressed first")
    tab.locator(".fednb-deny").click()
    expect(tab.locator("h2 .fednb-badge")).to_have_text("denied")
    # the first version, still pending on hospital-b, declared the columns it reads
    review.locator(".fednb-pending .fednb-owner-request", has_text="BMI by sex, first version").filter(
        has_text="hospital-b").click()
    first = page.locator(".fednb-review-tab:visible")
    expect(first.locator(".fednb-facts")).to_contain_text("Columns it may readsex, bmi")
    page.get_by_role("tab", name="submit.ipynb").click()
    expect(second.locator(".fednb-state-denied")).to_have_count(1, timeout=60_000)
    expect(second).to_contain_text("Group sizes under 10 must be suppressed first")
