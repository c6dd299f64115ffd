"""The released value's tables and charts speak the reader's language: headers, captions, the notes
of what a table leaves out, the noise note and the label of a hidden cell. The JupyterLab server
extension builds them per request, in the language that browser asked for, while other requests
keep theirs (the browser side is tests/ui/test_spanish_tour.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from fednb import i18n
from fednb.jupyter.present import request_detail
from fednb.widgets import svg_plots
from fednb.widgets.released import grids

HISTOGRAM = {"edges": list(range(0, 101, 4)), "below": 0, "counts": [None] * 3 + list(range(10, 32)),
             "above": None, "n": 900, "suppressed": 4, "dp": {"mechanism": "laplace", "epsilon": 0.5}}
CUMULATIVE = {"edges": list(range(30)), "below": list(range(30))}


@pytest.fixture(autouse=True)
def english_process():
    """The process speaks English (whatever this machine's locale); each test asks for Spanish."""
    i18n.set_language("en")
    yield
    i18n.set_language(None)


def _words(grid) -> str:
    return " ".join([grid.caption, *grid.headers, *grid.notes, *(c for row in grid.rows for c in row)])


def test_a_histogram_table_in_spanish():
    with i18n.speaking("es"):
        (grid,) = grids(HISTOGRAM)
    assert grid.headers == ["Intervalo", "Recuento"]
    assert grid.caption == "n = 900 · celdas suprimidas = 4"
    assert grid.notes == ["con ruido añadido: mecanismo laplace, epsilon 0.5", "… 7 intervalos más"]
    assert grid.rows[1] == ["[0, 4)", "suprimido"]
    (english,) = grids(HISTOGRAM)
    assert english.headers == ["Bin", "Count"] and english.notes[-1] == "… 7 more bins"
    assert english.caption == "n = 900 · suppressed cells = 4"


def test_every_cut_table_says_what_is_left_out_in_spanish():
    with i18n.speaking("es"):
        cumulative = grids(CUMULATIVE)[0]
        values = grids(list(range(25)))[0]
        entries = grids({f"k{i}": i for i in range(25)})[0]
        matrix = grids([[1] * 15] * 25)[0]
    assert cumulative.headers == ["Límite", "Filas por debajo"] and cumulative.notes == ["… 10 límites más"]
    assert values.notes == ["… 5 valores más"] and values.headers == ["", "Valor"]
    assert entries.notes == ["… 5 entradas más"]
    assert matrix.notes == ["… 5 filas más"]
    for grid in (cumulative, values, entries, matrix):
        assert not any(word in _words(grid) for word in ("more", "Edge", "Value", "below"))


def test_the_charts_label_a_hidden_cell_in_the_reader_language():
    with i18n.speaking("es"):
        bars = svg_plots.bars(["a", "b"], [3.0, None])
        heat = svg_plots.heatmap(["x"], ["a", "b"], [[1.0, None]])
    assert "b: suprimido" in bars and "suppressed" not in bars
    assert ">suprimido<" in heat and "suppressed" not in heat
    assert "b: suppressed" in svg_plots.bars(["a", "b"], [3.0, None])


def test_the_panel_tables_follow_the_asking_browser_not_the_server():
    request = {"id": "r1", "status": "done", "result": HISTOGRAM}
    assert i18n.get_language() == "en"
    with i18n.speaking("es"):
        spanish = request_detail("hospital-a", request)["tables"][0]
    english = request_detail("hospital-a", request)["tables"][0]
    assert spanish["headers"] == ["Intervalo", "Recuento"] and english["headers"] == ["Bin", "Count"]


def test_one_request_language_does_not_leak_into_another_thread_or_task():
    seen: dict[str, str] = {}
    inside, done = threading.Event(), threading.Event()

    def spanish_request() -> None:
        with i18n.speaking("es"):
            inside.set()
            done.wait(10)
            seen["es"] = grids(HISTOGRAM)[0].headers[0]

    worker = threading.Thread(target=spanish_request)
    worker.start()
    assert inside.wait(10)
    seen["other thread"] = grids(HISTOGRAM)[0].headers[0]  # while the Spanish request is open
    done.set()
    worker.join(10)

    async def both() -> list[str]:
        async def one(language: str) -> str:
            with i18n.speaking(language):
                await asyncio.sleep(0.01)  # the other task runs meanwhile
                return grids(HISTOGRAM)[0].headers[0]

        return await asyncio.gather(one("es"), one("en"))

    assert seen == {"es": "Intervalo", "other thread": "Bin"}
    assert asyncio.run(both()) == ["Intervalo", "Bin"]
    assert i18n.get_language() == "en"
