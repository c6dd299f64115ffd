"""Results a person reads, through real domains: released values as small tables (the tracker's
HTML and the JupyterLab panel's rows), timestamps to the second, and a refused or blocked request
in a real kernel shown as one line that names the domain instead of a traceback of fednb's frames."""

from __future__ import annotations

import re

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

import fednb
from fednb.demo import data
from fednb.i18n import set_language
from tests.conftest import live_domains

pytest.importorskip("ipywidgets", reason="fednb[widgets] is part of the test install")

BMI_BY_SEX = ('import fednb\n\ndef bmi_by_sex(df):\n    """Mean BMI by sex."""\n'
              '    return fednb.table(df, by="sex", value="bmi", agg="mean")\n')
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def own_fed(tmp_path_factory, alice_token):
    """Two hospitals of this module's own: the session's domains remember every release, and their
    differencing defence would (rightly) refuse other tests' questions near these ones."""
    with live_domains(tmp_path_factory.mktemp("readable"), {n: data.hospital(n) for n in data.HOSPITALS},
                      alice_token) as live:
        f = fednb.connect([d.url for d in live], token=alice_token)
        yield f
        f.close()


@pytest.fixture(scope="module")
def own_patients(own_fed):
    return own_fed.dataset("patients")


@pytest.fixture
def english():
    set_language("en")
    yield
    set_language(None)


def _cells(html: str) -> list[str]:
    """The cells of the released-value tables (the tracker's own cells hold them, and are skipped)."""
    return [c for c in re.findall(r'<td style="white-space:nowrap[^"]*">([^<]*)</td>', html)]


def _section(html: str, domain: str, domains: list[str]) -> str:
    """The part of the tracker's HTML from ``domain``'s row to the next domain's."""
    start = html.index(f">{domain}</b>")
    ends = [html.index(f">{d}</b>") for d in domains if html.index(f">{d}</b>") > start]
    return html[start:min(ends, default=len(html))]


def test_tracker_shows_a_released_histogram_as_bins_and_counts(own_patients, english):
    from fednb.widgets.tracker import rows_html

    hist = own_patients.histogram("age", bins=[20, 40, 60, 80])
    html = rows_html(hist.request)
    assert "counts" not in html and "[263" not in html  # no raw dict, no flattened list
    for domain in hist.domains:
        part = next(p for p in hist.request.parts if p.domain == domain)
        released = part.state["result"]
        counts = [released["below"], *released["counts"], released["above"]]
        shown = [f"{c:,}" if c is not None else "suppressed" for c in counts]
        cells = _cells(_section(html, domain, hist.domains))
        assert cells[0::2] == ["[−∞, 20)", "[20, 40)", "[40, 60)", "[60, 80)", "[80, ∞)"]
        assert cells[1::2] == shown
    assert 'white-space:nowrap">hospital-a' in html


def test_tracker_and_panel_show_a_crosstab_as_a_grid(own_patients, english):
    from fednb.jupyter.present import request_detail
    from fednb.widgets.tracker import rows_html

    tab = own_patients.crosstab("sex", "smoker")
    part = tab.request.parts[0]
    released = part.state["result"]
    detail = request_detail(part.domain, part.state)
    (grid,) = detail["tables"]
    assert grid["headers"] == ["", "False", "True"]
    assert [row[0] for row in grid["rows"]] == released["rows"]
    assert grid["rows"][0][1:] == [f"{c:,}" for c in released["counts"][0]]
    assert grid["caption"].startswith(f"n = {released['n']:,}")
    assert "[[" not in rows_html(tab.request)


def test_custom_table_result_reads_as_a_table_in_tracker_and_panel(fresh_domain, english):
    from fednb.jupyter.present import request_detail
    from fednb.widgets.tracker import rows_html

    fed = fednb.connect([fresh_domain.url], token=fresh_domain.token)
    req = fed.dataset("patients").submit(fednb.function(BMI_BY_SEX), description="Mean BMI by sex")
    owner = fresh_domain.domain()
    owner.approve(req.parts[0].id, "group means")
    owner.close()
    req.wait(120)
    assert req.status == {"hospital-t": "done"}, req.problems
    frame = req.results()["hospital-t"]
    (grid,) = request_detail("hospital-t", req.parts[0].state)["tables"]
    assert grid["headers"] == ["sex", "n", "mean"]
    assert grid["rows"] == [[sex, f"{frame.loc[sex, 'n']:,}", f"{frame.loc[sex, 'mean']:,.6g}"] for sex in frame.index]
    cells = _cells(rows_html(req))
    assert cells[cells.index("F"):cells.index("F") + 3] == grid["rows"][0]
    fed.close()


def test_timestamps_read_to_the_second_in_local_time():
    from fednb.widgets.released import cell, grids

    stamp = pd.Timestamp("2026-03-04 05:06:07.123456789", tz="UTC")
    local = stamp.tz_convert(pd.Timestamp.now().tz_localize("UTC").tz_convert(None).tz_localize(None)
                             .to_pydatetime().astimezone().tzinfo)
    assert cell(stamp) == local.strftime("%Y-%m-%d %H:%M:%S")
    (grid,) = grids(pd.Series([stamp.tz_localize(None)], index=["first visit"], name="when"))
    assert grid.rows == [["first visit", local.strftime("%Y-%m-%d %H:%M:%S")]]
    assert "123456789" not in str(grid.rows)


def _run(cells: list[str], home: str, **env: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, timeout=180, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": home}}).execute(env={"FEDNB_HOME": home, "LANG": "C.UTF-8", **env})
    return nb


def _error(cell) -> dict:
    (error,) = [o for o in cell.outputs if o["output_type"] == "error"]
    return error


def test_blocked_and_denied_requests_in_a_kernel_are_one_line_naming_the_domain(fresh_domain, tmp_path):
    connect = (f"import fednb\nfed = fednb.connect([{fresh_domain.url!r}], token={fresh_domain.token!r})\n"
               "ds = fed.dataset('patients')\nfednb.set_language('en')")
    denied = ("req = ds.submit(fednb.function('def peek(df):\\n    return df.head()\\n'), description='rows')\n"
              "req.parts[0].id")
    nb = _run([connect, "ds.count(where='age > 94')",
               "try:\n    ds.count(where='age > 94')\nexcept fednb.errors.NotEnoughDomains as e:\n"
               "    print('caught', sorted(e.problems))",
               denied], str(tmp_path))
    blocked = _error(nb.cells[1])
    assert blocked["ename"] == "NotEnoughDomains"
    assert len(blocked["traceback"]) == 1
    line = ANSI.sub("", blocked["traceback"][0])
    assert line.startswith("NotEnoughDomains: no result from hospital-t: blocked by disclosure control")
    assert "File " not in line and ".py" not in line
    assert nb.cells[2].outputs[0]["text"] == "caught ['hospital-t']\n"

    request_id = nb.cells[3].outputs[0]["data"]["text/plain"].strip("'")
    owner = fresh_domain.domain()
    owner.deny(request_id, "returns patient rows")
    owner.close()
    nb2 = _run([connect, "from fednb.client.requests import FederatedRequest, Part\n"
                "client = next(iter(ds.clients.values()))\n"
                f"req = FederatedRequest('patients', 'function', 'peek', [Part(client, {request_id!r})])\n"
                "req.result(timeout=60)"], str(tmp_path))
    refused = _error(nb2.cells[1])
    assert len(refused["traceback"]) == 1
    assert ANSI.sub("", refused["traceback"][0]) == \
        "NotEnoughDomains: no result from hospital-t: denied by the owner: returns patient rows"


def test_full_traceback_comes_back_for_debugging(fresh_domain, tmp_path):
    nb = _run([f"import fednb\nfed = fednb.connect([{fresh_domain.url!r}], token={fresh_domain.token!r})\n"
               "fed.dataset('patients').count(where='age > 94')"], str(tmp_path), FEDNB_FULL_TRACEBACK="1")
    error = _error(nb.cells[0])
    assert error["ename"] == "NotEnoughDomains" and len(error["traceback"]) > 3


def test_a_pooled_histogram_carries_its_bar_chart_for_saved_notebooks(own_patients, english):
    from fednb.widgets.display import plain_bundle

    hist = own_patients.histogram("bmi", [15, 20, 25, 30, 35, 40])
    html = plain_bundle(hist)["text/html"]
    counts = list(hist.value["count"].astype(object))
    bars = re.findall(r'<rect [^>]*fill="#3b75af"><title>([^<]*)</title>', html)
    stubs = re.findall(r'<rect [^>]*fill="#d9d9d9"><title>([^<]*)</title>', html)
    assert len(bars) == sum(c is not pd.NA for c in counts) and len(stubs) == sum(c is pd.NA for c in counts)
    assert bars[1] == f"[15, 20): {counts[1]:,}"
    assert all(s.endswith(": suppressed") for s in stubs)
    assert html.index("<svg") < html.index("<table")  # the chart, then the numbers


def test_a_pooled_crosstab_carries_a_heatmap_and_curves_carry_steps(own_patients, english):
    from fednb.widgets.display import plain_bundle

    tab = own_patients.crosstab("smoker", "readmitted")
    html = plain_bundle(tab)["text/html"]
    cells = tab.value.astype(object).to_numpy().ravel()
    assert html.count("<rect ") == len(cells)
    shown = re.findall(r'text-anchor="middle" fill="#(?:fff|222)">([^<]*)</text>', html)
    assert shown == [f"{int(c):,}" for c in cells]
    assert ">smoker</text>" in html and ">readmitted</text>" in html

    km = own_patients.kaplan_meier("followup_days", "died", by="smoker", time_grid=[180, 365, 730, 1095])
    html = plain_bundle(km)["text/html"]
    assert html.count("<path ") == len(km.groups) == 2
    assert "smoker = True" in html and "Kaplan–Meier of followup_days" in html


def test_my_requests_list_creation_times_to_the_second_in_local_time(own_fed, own_patients):
    import datetime as dt

    part = own_patients.count().request.parts[0]
    mine = own_fed.requests()
    row = mine[(mine["domain"] == part.domain) & (mine["request"] == part.id)].iloc[0]
    local = dt.datetime.fromtimestamp(part.state["created_at"]).replace(microsecond=0)  # the machine's zone
    assert row["created"] == pd.Timestamp(local)
    assert (mine["created"] == mine["created"].dt.floor("s")).all()  # no fractions of a second anywhere


def test_a_saved_request_shows_the_trackers_tables_without_a_widget(own_patients, english):
    hist = own_patients.histogram("age", bins=[20, 40, 60, 80])
    html = hist.request._repr_html_()
    assert "Built-in histogram on patients" in html
    for domain in hist.domains:
        cells = _cells(_section(html, domain, hist.domains))
        assert cells[0::2] == ["[−∞, 20)", "[20, 40)", "[40, 60)", "[60, 80)", "[80, ∞)"]
