"""Driving JupyterLab in the tests: write a notebook, open it, run cells, open fednb's panels."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
from playwright.sync_api import Page, expect

LOAD_MS = 60_000


def write_notebook(root: Path, name: str, cells: list[str]) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / name)
    return name


def open_lab(page: Page, lab, notebook: str | None = None) -> None:
    path = f"/lab/tree/{notebook}" if notebook else "/lab"
    page.goto(f"{lab.url}{path}?token={lab.token}")
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=LOAD_MS)
    if notebook:
        wait_for_kernel(page, lab, notebook)


def wait_for_kernel(page: Page, lab, notebook: str, timeout: float = 60) -> None:
    """The notebook's kernel is started and idle, and the page knows it (see the recipe)."""
    deadline = time.monotonic() + timeout
    while lab.kernel_state(notebook) != "idle":
        if time.monotonic() > deadline:
            raise AssertionError(f"the kernel of {notebook} did not become idle")
        time.sleep(0.2)
    expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=LOAD_MS)


def cell(page: Page, index: int):
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(index)


def start_cell(page: Page, index: int) -> None:
    """Run cell ``index`` (Shift+Enter in command mode) without waiting for it."""
    cell(page, index).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Enter")


def run_cell(page: Page, index: int, *, count: int | None = None, timeout: float = 60_000) -> None:
    """Run cell ``index`` and wait for its execution count (``count``, default any number)."""
    start_cell(page, index)
    prompt = cell(page, index).locator(".jp-InputArea-prompt")
    expect(prompt).to_have_text(f"[{count}]:" if count else _numbered(), timeout=timeout)


def _numbered():
    import re

    return re.compile(r"\[\d+\]:")


def outputs(page: Page, index: int):
    return cell(page, index).locator(".jp-OutputArea-output")


def open_side_panel(page: Page, panel_id: str):
    tab = page.locator(f'.jp-SideBar.jp-mod-left [data-id="{panel_id}"]')
    panel = page.locator(f"#{panel_id}")
    if not panel.is_visible():
        tab.click()
    expect(panel).to_be_visible()
    return panel
