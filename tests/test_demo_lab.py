"""The pieces of ``fednb demo --lab`` that protect a first hour: the port JupyterLab really gets, the
news prompt answered (the demo and Binder), the user's folder kept. The whole run, in a real
JupyterLab, is tests/notebooks/test_demo_lab.py."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from fednb.demo import lab
from fednb.errors import InvalidInput

REPO = Path(__file__).resolve().parents[1]


def test_a_taken_port_moves_to_the_next_free_one_and_jupyter_is_told_exactly(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        chosen = lab.choose_port(busy)
        assert chosen != busy and busy < chosen <= busy + lab.PORT_TRIES
    assert lab.choose_port(0) > 0
    command = lab.lab_command(tmp_path, lang="es", port=chosen, open_browser=False)
    assert f"--ServerApp.port={chosen}" in command and "--ServerApp.port_retries=0" in command
    assert f"--LabApp.user_settings_dir={tmp_path / lab.SETTINGS}" in command


def test_every_port_taken_says_how_to_pick_another(monkeypatch):
    monkeypatch.setattr(lab, "PORT_TRIES", 0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(InvalidInput, match="--port 0"):
            lab.choose_port(taken.getsockname()[1])


def test_binder_and_environment_overrides_answer_the_news_prompt_as_jupyterlab_reads_them(tmp_path):
    from jupyterlab_server.settings_utils import _get_overrides

    (tmp_path / "overrides.json").write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "x"}}))
    lab.quiet_lab_settings(tmp_path)
    overrides, error = _get_overrides(str(tmp_path))
    assert not error
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    assert overrides["@jupyterlab/apputils-extension:themes"] == {"theme": "x"}  # others' settings kept
    assert "quiet_lab_settings(Path(sys.prefix) / 'share/jupyter/lab/settings')" in (
        REPO / "binder" / "postBuild").read_text()


def test_the_demo_settings_answer_the_prompt_and_keep_the_users_later_choice(tmp_path):
    folder = lab.demo_user_settings(tmp_path)
    path = folder / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    assert json.loads(path.read_text()) == {"fetchNews": "false"}
    path.write_text('{"fetchNews": "true"}')
    lab.demo_user_settings(tmp_path)
    assert json.loads(path.read_text()) == {"fetchNews": "true"}


def test_the_default_folder_is_in_the_users_home_and_the_notebooks_copy_keeps_edits(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert lab.DEFAULT_DIR.expanduser() == tmp_path / "fednb-demo"
    target = tmp_path / "fednb-demo" / "notebooks"
    lab.copy_notebooks(target)
    tour = target / "en" / lab.TOURS["en"]
    tour.write_text(tour.read_text() + " ")
    edited = tour.read_text()
    lab.copy_notebooks(target)
    assert tour.read_text() == edited
