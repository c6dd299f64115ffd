"""The teacher's kit: Binder links that point at this repository (pyproject's [project.urls]) in every
place a teacher or student finds them, an exercise with a folded solution in every tutorial notebook
in both languages, rendered previews with outputs for every notebook, and the README's memory figure
with how it was measured."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*/*.ipynb"))
BINDER = re.compile(r"https://mybinder\.org/v2/gh/([^/\s)>]+/[^/\s)>]+)/HEAD\?urlpath=lab/tree/(notebooks/[^\s)>]+)")


def _repository() -> str:
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    return url.removeprefix("https://github.com/")


@pytest.mark.parametrize("where", ["README.md", "docs/workshop.md", "docs/taller.md",
                                   "notebooks/en/01-analyst-tour.ipynb", "notebooks/es/01-recorrido-analista.ipynb"])
def test_binder_links_open_this_repository_on_a_notebook_that_exists(where):
    links = BINDER.findall((ROOT / where).read_text())
    assert links, f"{where} has no Binder link"
    for repository, notebook in links:
        assert repository == _repository(), f"{where}: {repository} is not pyproject's {_repository()}"
        assert (ROOT / notebook).is_file(), f"{where} opens {notebook}, which does not exist"
    assert (ROOT / "binder" / "requirements.txt").is_file() and (ROOT / "binder" / "postBuild").is_file()


def test_the_spanish_binder_link_opens_the_spanish_tour():
    readme = {nb for _, nb in BINDER.findall((ROOT / "README.md").read_text())}
    assert readme == {"notebooks/en/01-analyst-tour.ipynb", "notebooks/es/01-recorrido-analista.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_each_notebook_has_an_exercise_then_its_folded_solution(path):
    cells = nbformat.read(path, as_version=4).cells
    exercises = [i for i, c in enumerate(cells) if "exercise" in c.metadata.get("tags", [])]
    assert len(exercises) == 1, f"{path.name}: one exercise cell, tagged 'exercise'"
    i = exercises[0]
    task, starter, solution = cells[i - 1], cells[i], cells[i + 1]
    heading = "### Your turn" if path.parent.name == "en" else "### Ejercicio"
    assert task.cell_type == "markdown" and task.source.startswith(heading)
    assert starter.cell_type == "code" and "..." in starter.source  # runs as it is: assigns Ellipsis
    assert solution.metadata == {"tags": ["solution"], "jupyter": {"source_hidden": True}}
    assert "assert " in solution.source  # the solution checks its own answer when the tests run it


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_each_notebook_has_a_rendered_preview_with_outputs(path):
    preview = ROOT / "docs" / "previews" / path.parent.name / f"{path.stem}.html"
    assert preview.is_file(), f"run scripts/build_previews.py: {preview.relative_to(ROOT)} is missing"
    html = preview.read_text()
    assert html.count("jp-OutputArea-output") >= 5 and "Traceback" not in html


def test_the_readme_gives_the_measured_memory_and_how():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Workshops"):]
    assert "benchmarks/workshop_memory.py" in section
    assert re.search(r"\b\d[\d,]* MB\b", section) and "PSS" in section
