"""Every workshop notebook, English and Spanish, executed end to end with a real kernel against the
workshop's domains. The notebooks assert the facts they teach, so a wrong answer fails here; a
cell that raises fails here. Committed notebooks carry no outputs, and each language has the same
cells as the other."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(ROOT.glob("*/*.ipynb"))
PARALLEL = 4  # kernels at once: most of a notebook's time is waiting on domains and imports
CELL_TIMEOUT = 900  # one cell; bounds a hang only


def kernel_env(fednb_home: Path) -> dict[str, str]:
    """The kernel's environment: the test's, with this interpreter's scripts (the ``fednb`` command of
    ``%%bash`` cells) first on PATH, and the workshop's profile."""
    scripts = str(Path(sys.executable).parent)
    # no browser here: plotly's mimetype output, without embedding plotly.js into every notebook run
    return {**os.environ, "FEDNB_HOME": str(fednb_home), "PATH": f"{scripts}:{os.environ.get('PATH', '')}",
            "PLOTLY_RENDERER": "plotly_mimetype"}


async def execute(path: Path, cwd: Path, env: dict[str, str]) -> tuple[nbformat.NotebookNode, float, str | None]:
    """Run a notebook in ``cwd``; returns (the executed notebook, seconds, the error or None)."""
    nb = nbformat.read(path, as_version=4)
    cwd.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(cwd)}})
    started = time.monotonic()
    try:
        await client.async_execute(env=env)
        error = None
    except CellExecutionError as exc:
        error = str(exc)
    return nb, time.monotonic() - started, error


def execute_all(paths: list[Path], workdir: Path, env: dict[str, str], parallel: int = PARALLEL) -> dict:
    async def main() -> list:
        gate = asyncio.Semaphore(parallel)

        async def one(path: Path):
            async with gate:
                return await execute(path, workdir / path.parent.name / path.stem, env)

        return await asyncio.gather(*(one(p) for p in paths))

    return dict(zip(paths, asyncio.run(main())))


@pytest.fixture(scope="module")
def executed(workshop, tmp_path_factory) -> dict:
    started = time.monotonic()
    runs = execute_all(NOTEBOOKS, tmp_path_factory.mktemp("notebooks"), kernel_env(workshop.home))
    print(f"\n{len(runs)} notebooks in {time.monotonic() - started:.1f} s, {PARALLEL} at a time: "
          + ", ".join(f"{p.parent.name}/{p.stem} {s:.1f} s" for p, (_, s, _) in runs.items()))
    return runs


def test_there_are_parallel_notebooks_in_english_and_spanish():
    en = sorted(p.name[:2] for p in ROOT.glob("en/*.ipynb"))
    es = sorted(p.name[:2] for p in ROOT.glob("es/*.ipynb"))
    assert en == es == ["01", "02", "03", "04", "05"]


@pytest.mark.timeout(3600)  # the first of these runs all ten notebooks (the module fixture), four at a time
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_notebook_runs_end_to_end(executed, path):
    nb, _, error = executed[path]
    assert error is None, f"{path.relative_to(ROOT)} failed:\n{error}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors


def test_a_failing_cell_fails_the_run(tmp_path, workshop):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import fednb\nfed = fednb.connect(profile='workshop', min_domains=3)"),
                nbformat.v4.new_code_cell("assert fed.dataset('patients').count().value == 1, 'taught a wrong fact'")]
    path = tmp_path / "wrong.ipynb"
    nbformat.write(nb, path)
    runs = execute_all([path], tmp_path, kernel_env(workshop.home))
    _, _, error = runs[path]
    assert error is not None and "taught a wrong fact" in error


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_committed_notebook_has_no_outputs(path):
    """As `nbstripout` leaves them: no outputs, no execution counts, no per-run metadata."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs (nbstripout)"
        assert set(cell.metadata) <= {"tags", "jupyter"}, f"{path.name}: cell metadata {dict(cell.metadata)}"
        assert cell.metadata.get("jupyter", {"source_hidden": True}) == {"source_hidden": True}  # a folded solution
    assert set(nb.metadata) <= {"kernelspec", "language_info"}
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


def _skeleton(code: str) -> str:
    """Code without its strings and comments: what must be the same in both languages."""
    code = re.sub(r'("""|\'\'\')(.|\n)*?\1', "S", code)
    code = re.sub(r'"(\\.|[^"\\\n])*"', "S", code)
    code = re.sub(r"'(\\.|[^'\\\n])*'", "S", code)
    return re.sub(r"#[^\n]*", "", code).replace(" ", "")


@pytest.mark.parametrize("number", ["01", "02", "03", "04", "05"])
def test_spanish_notebook_has_the_same_code_as_the_english_one(number):
    (en,), (es,) = ROOT.glob(f"en/{number}-*.ipynb"), ROOT.glob(f"es/{number}-*.ipynb")
    a, b = nbformat.read(en, as_version=4), nbformat.read(es, as_version=4)
    assert [c.cell_type for c in a.cells] == [c.cell_type for c in b.cells]
    for x, y in zip(a.cells, b.cells):
        if x.cell_type == "code":
            assert _skeleton(x.source) == _skeleton(y.source), f"{en.name} / {es.name}:\n{x.source}\n---\n{y.source}"
