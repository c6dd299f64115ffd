"""Rendered previews of the workshop notebooks, with their outputs, for docs/previews/.

A teacher (or a student on a phone) reads what each notebook shows before running it: the pooled
tables and their charts, the tracker, a denied request's reason, the training curve. This serves the
workshop's domains as ``binder/start`` does, executes every notebook in a fresh kernel, and converts
each to one self-contained HTML page (nbconvert's lab template). Plotly figures are embedded for
plotly.js from its CDN (PLOTLY_RENDERER=notebook_connected); the pooled results' own SVG charts need
nothing.

    python scripts/build_previews.py [--only en/01-analyst-tour]

Re-run after changing a notebook, and commit docs/previews/.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "previews"


WIDGET = "application/vnd.jupyter.widget-view+json"


def static(nb):
    """The notebook as a page without live widgets: each fednb widget's output also carries the
    result's own HTML (its tables and SVG chart), which needs no widget manager and no network."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET in data and "text/html" in data:
                del data[WIDGET]
    return nb


def main() -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    from fednb.demo import workshop as ws

    parser = argparse.ArgumentParser()
    parser.add_argument("--only", action="append", default=[], help="LANG/NAME without .ipynb; repeatable")
    args = parser.parse_args()
    paths = sorted((ROOT / "notebooks").glob("*/*.ipynb"))
    if args.only:
        paths = [p for p in paths if f"{p.parent.name}/{p.stem}" in args.only]
    with tempfile.TemporaryDirectory(prefix="fednb-previews-") as tmp:
        work = Path(tmp)
        os.environ["FEDNB_HOME"] = str(work / "home")
        servers = ws.serve(work / "domains", port=0)
        env = {**os.environ, "PLOTLY_RENDERER": "notebook_connected",
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        try:
            for path in paths:
                nb = nbformat.read(path, as_version=4)
                cwd = work / path.parent.name / path.stem
                cwd.mkdir(parents=True)
                NotebookClient(nb, kernel_name="python3", timeout=1800,
                               resources={"metadata": {"path": str(cwd)}}).execute(env=env)
                body, _ = HTMLExporter(template_name="lab").from_notebook_node(static(nb))
                target = OUT / path.parent.name / f"{path.stem}.html"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(body, encoding="utf-8")
                print(f"{target.relative_to(ROOT)}: {len(body) // 1024} KiB", flush=True)
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()
