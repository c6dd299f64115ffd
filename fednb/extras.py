"""Which optional part of fednb (a pip extra) brings a module that is not installed.

``pip install fednb`` is the analyst's client; a data owner adds ``fednb[domain]`` (the server, the
sandbox's data readers, the statistics that run next to the rows), a trainer ``fednb[learn]``
(torch), a notebook user ``fednb[widgets]`` or ``fednb[jupyter]``. A command that needs a part that
is not installed fails on an import; this names the extra to install instead of a traceback.
"""

from __future__ import annotations

import re

EXTRAS = ("domain", "learn", "widgets", "jupyter")  # most specific first: `all` includes them all
# what each extra brought when this was written, for a source checkout with no installed metadata
_KNOWN = {"domain": ("fastapi", "uvicorn", "pyroaring", "pyarrow", "formulaic", "scipy"),
          "learn": ("torch", "safetensors"), "widgets": ("ipywidgets", "plotly", "anywidget"),
          "jupyter": ("jupyterlab", "jupyter_server", "ipykernel")}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*).*extra\s*==\s*['\"]([\w-]+)['\"]")
WHAT_FOR = {"domain": "to serve a domain", "learn": "to train models", "widgets": "for the notebook widgets",
            "jupyter": "for JupyterLab"}


def extra_providing(module: str | None) -> str | None:
    """The extra whose packages include ``module``'s top-level package, or None."""
    if not module:
        return None
    root = module.split(".")[0].lower()
    declared = _declared()
    for extra in EXTRAS:
        if root in declared.get(extra, ()) or root in _KNOWN[extra]:
            return extra
    return None


def install_hint(module: str | None) -> str | None:
    """'install fednb[domain] to serve a domain ...' for a missing ``module``, or None if no extra has it."""
    extra = extra_providing(module)
    if extra is None:
        return None
    return (f"{module!r} is not installed: install fednb[{extra}] {WHAT_FOR[extra]} "
            f"(pip install 'fednb[{extra}]')")


def _declared() -> dict[str, set[str]]:
    from importlib import metadata

    try:
        requirements = metadata.requires("fednb") or []
    except metadata.PackageNotFoundError:
        return {}
    out: dict[str, set[str]] = {}
    for line in requirements:
        m = _REQUIREMENT.match(line)
        if m:
            out.setdefault(m.group(2), set()).add(m.group(1).lower().replace("-", "_"))
    return out
