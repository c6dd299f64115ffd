"""Results show themselves through fednb.display, the registry the notebook UI fills: as widgets
where the UI is installed and can render, as their own text and HTML everywhere else, and the
algorithms never need the UI to be importable."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from fednb import display
from fednb.federated.stats import Pooled


@pytest.fixture
def shown(monkeypatch):
    """What IPython was asked to display."""
    import IPython.display

    out: list = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: out.append(obj))
    return out


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(display, "_renderers", {})
    monkeypatch.setattr(display, "_ui_loaded", False)


def _pooled() -> Pooled:
    return Pooled("mean", 42.5, pd.DataFrame({"domain": ["a", "b"], "n": [10, 12]}))


def test_without_the_ui_a_result_shows_its_own_text_and_html(shown, fresh_registry, monkeypatch):
    monkeypatch.setattr(display, "UI_MODULE", "fednb.no_such_ui")
    assert display.show(_pooled()) is None
    (bundle,) = shown
    assert "42.5" in bundle["text/plain"] and "<b>mean</b>" in bundle["text/html"]
    assert display.watch(object()) is False


def test_the_widgets_fill_the_registry_when_first_needed(shown, fresh_registry, monkeypatch):
    monkeypatch.delitem(sys.modules, "fednb.widgets.display", raising=False)
    monkeypatch.setenv("FEDNB_WIDGETS", "0")  # no kernel here: the widgets' own plain fallback
    _pooled()._ipython_display_()
    from fednb.widgets import display as widgets_display

    assert display._renderers == {"show": widgets_display.show, "watch": widgets_display.watch}
    (bundle,) = shown
    assert "42.5" in bundle["text/plain"]
    assert display.watch(object()) is False  # nothing to watch outside a notebook
