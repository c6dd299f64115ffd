"""How fednb objects show themselves in a notebook, without the algorithms importing the UI.

Results and client objects implement IPython's display protocol: ``__repr__`` and
``_repr_html_`` everywhere, and an ``_ipython_display_`` that calls :func:`show`. The notebook UI
(:mod:`fednb.widgets`) plugs into this registry when it is loaded (:func:`use`); :func:`show`
loads the UI named in :data:`UI_MODULE` on first use, by name, so the algorithms
(:mod:`fednb.federated`, :mod:`fednb.learn`) run and display without ipywidgets and never import
it, and the widgets may import the algorithms freely (no import circle). This is the inversion
IPython itself uses for its formatters (``for_type_by_name``): the renderer knows the types, the
types do not know the renderer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

UI_MODULE = "fednb.widgets.display"  # registers its renderers with use() when imported

_renderers: dict[str, Callable[..., Any]] = {}
_ui_loaded = False


def use(*, show: Callable[[Any], Any] | None = None, watch: Callable[[Any], bool] | None = None) -> None:
    """Install the UI's ``show(obj)`` (display an object, return its widget or None) and
    ``watch(obj)`` (attach a live view to a running object; False when none can show)."""
    if show is not None:
        _renderers["show"] = show
    if watch is not None:
        _renderers["watch"] = watch


def _renderer(kind: str) -> Callable[..., Any] | None:
    global _ui_loaded
    if kind not in _renderers and not _ui_loaded:
        _ui_loaded = True
        try:
            importlib.import_module(UI_MODULE)
        except ImportError:  # a trimmed install without the widgets package: plain reprs
            pass
    return _renderers.get(kind)


def plain_bundle(obj: Any) -> dict[str, Any]:
    """The object's own text and HTML reprs."""
    bundle: dict[str, Any] = {"text/plain": repr(obj)}
    html = getattr(obj, "_repr_html_", None)
    if callable(html):
        bundle["text/html"] = html()
    return bundle


def show(obj: Any) -> Any | None:
    """Display ``obj`` through the UI where one is installed, else as its plain reprs; returns the
    widget shown, if any."""
    renderer = _renderer("show")
    if renderer is not None:
        return renderer(obj)
    from IPython.display import display

    display(plain_bundle(obj), raw=True)
    return None


def watch(obj: Any) -> bool:
    """Attach a live view to a long-running object (a training run's dashboard); False when no UI
    can show one here, so the caller falls back to a progress bar."""
    renderer = _renderer("watch")
    return bool(renderer(obj)) if renderer is not None else False
