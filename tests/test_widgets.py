"""The notebook widgets, in-process against real domains: what each shows, that a request tracker
follows the owner's decision by itself, and how fednb objects display with and without ipywidgets."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings

import pytest

import fednb
from fednb.i18n import set_language
from tests.conftest import free_port

pytest.importorskip("ipywidgets", reason="fednb[widgets] is part of the test install")


def _until(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def english():
    set_language("en")
    yield
    set_language(None)


def test_federation_view_shows_domains_schema_and_mock(fed, english):
    from fednb.widgets import FederationView

    view = FederationView(fed, background=False)
    assert "hospital-a" in view._domains.value and "hospital-b" in view._domains.value
    assert view._domains.value.count(">up<") == 2
    assert view._picker.value == "patients"
    assert "systolic_bp" in view._dataset.value and "~1,200" in view._dataset.value
    _until(lambda: "fednb-mock" in view._mock.value)
    assert view._mock.value.count("hospital-a") >= 1


def test_federation_view_names_a_down_domain(hospitals, alice_token, english):
    from fednb.widgets import FederationView

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fed = fednb.connect([hospitals[0].url, f"http://127.0.0.1:{free_port()}"], token=alice_token)
    view = FederationView(fed, background=False)
    assert ">down<" in view._domains.value and "cannot reach" in view._domains.value
    assert ">up<" in view._domains.value
    fed.close()


def test_tracker_follows_the_owners_decision_without_being_asked(fresh_domain, english):
    from fednb.widgets import RequestTracker

    fed = fednb.connect([fresh_domain.url], token=fresh_domain.token)
    ds = fed.dataset("patients")
    deny_me = ds.submit(fednb.function("def peek(df):\n    return df.head()\n"), description="rows")
    approve_me = ds.submit(fednb.function("def avg(df):\n    return df.age.mean()\n"), description="mean")
    denied, approved = RequestTracker(deny_me), RequestTracker(approve_me)
    assert "waiting for the owner&#x27;s review" in denied._table.value
    assert "following live" in denied._footer.value
    owner = fresh_domain.domain()
    owner.deny(deny_me.parts[0].id, "returns patient rows")
    owner.approve(approve_me.parts[0].id, "an average")
    owner.close()
    _until(lambda: "fednb-state-denied" in denied._table.value)
    assert "denied by the owner: returns patient rows" in denied._table.value
    _until(lambda: approve_me.done)  # done with a sandbox; failed ("no sandbox running") without one
    _until(lambda: f"fednb-state-{approve_me.parts[0].status}" in approved._table.value)
    assert "all 1 domain(s) final" in approved._footer.value
    _until(lambda: not approve_me._watcher.running, 5)
    assert approved._progress.value == 1
    fed.close()


def test_tracker_shows_released_values_and_speaks_spanish(fed):
    from fednb.widgets import RequestTracker

    ds = fed.dataset("patients")
    req = ds.mean("age").request
    set_language("es")
    try:
        view = RequestTracker(req, follow=False)
        assert "Agregado mean sobre patients" in view._title.value
        assert view._table.value.count("terminada") == 2 and "nowrap\">mean</td>" in view._table.value
        assert "los 2 dominio(s) finalizados" in view._footer.value
    finally:
        set_language(None)


def test_result_views_plot_histograms_and_crosstabs(fed, english):
    from fednb.widgets import ResultView

    patients = fed.dataset("patients")
    hist = patients.histogram("bmi", [15, 20, 25, 30, 35, 40])
    view = ResultView(hist)
    bars = view.figure.data[0]
    expected = [None if c is None or str(c) == "<NA>" else int(c) for c in hist.value["count"].astype(object)]
    assert list(bars.y) == expected and bars.x[1] == "[15, 20)"
    shown = view.children[1].children[0].outputs[0]["data"]["application/vnd.plotly.v1+json"]
    assert shown["data"][0]["type"] == "bar" and shown["data"][0]["y"] == expected
    ct = ResultView(patients.crosstab("sex", "readmitted"))
    assert ct.figure.data[0].type == "heatmap"
    assert [list(map(lambda v: None if v is None else int(v), row)) for row in ct.figure.data[0].z] == \
        [[None if str(v) == "<NA>" else int(v) for v in row] for row in ct.pooled.value.astype(object).to_numpy()]
    mean = ResultView(patients.mean("age"))
    assert mean.figure is None and "fednb-value" in mean.children[1].value
    assert "hospital-b" in mean.children[-1].value
    q = ResultView(patients.quantile("age", [0.25, 0.5]))
    assert "fednb-quantiles" in q.children[1].value and "exact" in q.children[1].value


def test_a_result_with_a_plot_method_shows_its_figure():
    import plotly.graph_objects as go

    from fednb.widgets.display import widget_for

    class GLMResult:  # the shape of the GLM engineer's result: .plot() returns a plotly figure
        def plot(self):
            return go.Figure(go.Scatter(x=[0.1, 0.5], y=["age", "bmi"], mode="markers"))

        def _repr_html_(self):
            return "<table><tr><td>age</td><td>0.1</td></tr></table>"

    view = widget_for(GLMResult())
    shown = view.children[0].outputs[0]["data"]["application/vnd.plotly.v1+json"]
    assert shown["data"][0]["y"] == ["age", "bmi"] and "age" in view.children[1].value


def test_training_dashboard_lines_gaps_and_dropouts(english):
    from fednb.widgets import TrainingDashboard

    dash = TrainingDashboard()
    for r in (1, 2, 3):
        dash.update({"round": r, "domain": "a", "loss": 1 / r, "accuracy": 0.5 + r / 10, "n": 10, "status": "ok"})
        dash.update({"round": r, "domain": "b", "loss": None if r == 2 else 2 / r, "accuracy": None,
                     "n": None, "status": "timeout" if r == 2 else "ok"})
        dash.update({"round": r, "domain": "global", "loss": 1.5 / r, "accuracy": 0.6, "n": 20, "status": "ok"})
    loss = dash.plotted("loss")
    assert loss["b"] == ([1, 2, 3], [2.0, None, 2 / 3])  # a gap at round 2
    assert loss["global"] == ([1, 2, 3], [1.5, 0.75, 0.5])
    assert loss["dropped out"] == ([2], [2.0])  # at b's last value before it dropped
    assert dash.plotted("accuracy")["b"] == ([1, 2, 3], [None, None, None])
    assert dash.plotted("accuracy")["a"][1] == [0.6, 0.7, 0.8]
    widths = {tr.name: tr.line.width for tr in dash.figure.data if tr.mode == "lines+markers"}
    assert widths["global"] == 4 and widths["a"] == 2
    assert sum(tr.showlegend is not False for tr in dash.figure.data) == 4  # one legend entry per line
    assert "round 3: 2 of 2 domain(s) answered" in dash._status.value
    assert "round 2 b (timed out)" in dash._dropouts.value
    assert len(dash.frame) == 9
    for bad, why in [({"round": "1", "domain": "a"}, "'round'"), ({"round": 1, "domain": ""}, "'domain'"),
                     ({"round": 1, "domain": "a", "status": "lost"}, "'status'"),
                     ({"round": 1, "domain": "a", "loss": "high"}, "'loss'")]:
        with pytest.raises(ValueError, match=why):
            dash.update(bad)
    assert len(dash.records) == 9, "a bad record changes nothing"


def test_display_uses_widgets_in_a_kernel_and_plain_reprs_elsewhere(fed, monkeypatch):
    from fednb.widgets import display as d

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append((obj, kw)))
    d.show(fed)  # not in a kernel: the plain reprs, as before
    assert shown[-1][0]["text/plain"].startswith("<Federation of 2 domain(s)") and shown[-1][1] == {"raw": True}
    monkeypatch.setattr(d, "in_kernel", lambda: True)
    view = d.show(fed)
    assert type(view).__name__ == "FederationView"
    bundle = shown[-1][0]  # the widget, with the object's own text for saved notebooks and exports
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == view.model_id
    assert bundle["text/plain"].startswith("<Federation of 2 domain(s)")
    monkeypatch.setenv("FEDNB_WIDGETS", "0")
    assert d.show(fed) is None and "application/vnd.jupyter.widget-view+json" not in shown[-1][0]
    monkeypatch.delenv("FEDNB_WIDGETS")
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # ipywidgets not installed
    assert d.show(fed) is None and "application/vnd.jupyter.widget-view+json" not in shown[-1][0]


def test_import_fednb_stays_light():
    code = ("import sys, fednb; fednb.set_language; fednb.widgets; "
            "print(sorted(m for m in ('ipywidgets', 'plotly', 'IPython', 'pandas', 'jupyter_server', 'tornado') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert fednb.widgets.TrainingDashboard.__name__ == "TrainingDashboard"


def test_the_trainers_records_and_calls_drive_the_dashboard(english):
    """The Trainer (fednb.learn) asks in_notebook(), builds TrainingDashboard(rounds=, domains=) and
    feeds it its own records: extra keys, "failed", reasons, held-out evaluation of the global model."""
    from fednb.widgets import TrainingDashboard, in_notebook

    assert in_notebook() is False  # not in a kernel: the Trainer shows a progress bar instead
    dash = TrainingDashboard(rounds=3, domains=["hospital-a", "hospital-b"])
    assert list(dash.plotted("loss")) == ["dropped out", "global", "hospital-a", "hospital-b"]
    assert tuple(dash.figure.layout.xaxis.range) == (0.5, 3.5)
    common = {"seconds": 0.1, "train_seconds": 0.05, "eval_loss": None, "eval_accuracy": None}
    dash.update({**common, "round": 1, "domain": "hospital-a", "status": "ok", "n": 800, "loss": 0.7,
                 "accuracy": 0.6, "reason": None})
    dash.update({**common, "round": 1, "domain": "hospital-b", "status": "failed", "n": None, "loss": None,
                 "accuracy": None, "reason": "the sandbox ran out of memory"})
    dash.update({**common, "round": 1, "domain": "global", "status": "ok", "n": 800, "loss": 0.7, "accuracy": 0.6,
                 "eval_loss": 0.72, "eval_accuracy": 0.58, "reason": None})
    assert dash.plotted("accuracy")["global (held-out evaluation)"] == ([1], [0.58])
    assert "round 1: 1 of 2 domain(s) answered" in dash._status.value
    assert "round 1 hospital-b (failed)" in dash._dropouts.value
    drop = next(tr for tr in dash.figure.data if tr.name == "dropped out")
    assert drop.hovertext == ("round 1 hospital-b (failed): the sandbox ran out of memory",)


def test_a_glm_result_shows_its_coefficient_plot_and_summary(fed, monkeypatch):
    from fednb.widgets import display as d

    result = fednb.glm("readmitted ~ age + bmi", data=fed.dataset("patients"), family="binomial")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append(obj))
    monkeypatch.setattr(d, "in_kernel", lambda: True)
    view = d.show(result)
    plot = view.children[0].outputs[0]["data"]["application/vnd.plotly.v1+json"]
    assert plot["data"][0]["y"] == ["age", "bmi"]
    assert "Generalized Linear Model" in view.children[1].value
    assert shown[-1]["text/plain"].startswith("federated binomial GLM")
