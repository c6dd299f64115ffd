"""``fednb demo --lab``: the workshop's three domains on this machine and JupyterLab open on the tour.

Everything lives in one folder (a temporary one unless ``--dir`` is given): the domains, a private
``FEDNB_HOME`` with the ``workshop`` profile the notebooks and the panels read (so the user's own
``~/.fednb`` is never touched), and a copy of the notebooks to edit freely. JupyterLab listens on
127.0.0.1 only and stops, with the domains, on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from fednb.errors import InvalidInput

TOURS = {"en": "01-analyst-tour.ipynb", "es": "01-recorrido-analista.ipynb"}


def notebooks_source() -> Path:
    """The tutorial notebooks: inside the installed wheel (``fednb/notebooks``) or, in a source
    checkout, the repository's ``notebooks/``."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here / "notebooks", here.parent / "notebooks"):
        if (candidate / "en" / TOURS["en"]).is_file():
            return candidate
    raise InvalidInput("the tutorial notebooks are not installed with fednb; reinstall it from its wheel or source")


def copy_notebooks(target: Path) -> None:
    """Copy the notebooks (both languages) into ``target`` unless it already has them: a second
    run keeps the user's edits."""
    source = notebooks_source()
    for lang in TOURS:
        if not (target / lang).exists():
            shutil.copytree(source / lang, target / lang, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))


def lab_command(root: Path, *, lang: str, port: int, open_browser: bool) -> list[str]:
    """The JupyterLab command line: 127.0.0.1, the notebooks folder, the tour open, fednb's panels
    on the ``workshop`` profile; in Spanish, the demo's own settings folder (:func:`lab_language`)."""
    opens = f"/lab/tree/{lang}/{TOURS[lang]}"
    return [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            f"--ServerApp.root_dir={root / 'notebooks'}", f"--ServerApp.default_url={opens}",
            f"--LabApp.default_url={opens}", "--Fednb.profile=workshop",
            *([f"--LabApp.user_settings_dir={root / 'lab-settings'}"] if lang != "en" else []),
            *([] if open_browser else ["--no-browser"]),
            *(["--allow-root"] if os.geteuid() == 0 else [])]  # root asked for it (containers, CI)


SPANISH_PACK = ("jupyterlab_language_pack_es_ES", "jupyterlab-language-pack-es-ES")


def lab_language(root: Path, lang: str) -> str | None:
    """Make JupyterLab, the kernels and fednb's panels speak ``lang``; returns a warning or None.

    JupyterLab's menus and fednb's panels follow the ``locale`` of JupyterLab's translation plugin
    (``@jupyterlab/translation-extension:plugin``), written in the demo's own settings folder so the
    user's settings stay as they are; the Spanish texts come from the language pack (the ``jupyter``
    extra installs it). ``FEDNB_LANGUAGE`` makes the kernels' widgets and the domains' messages
    Spanish without a ``fednb.set_language`` in each notebook.
    """
    os.environ["FEDNB_LANGUAGE"] = lang
    if lang == "en":
        return None
    settings = root / "lab-settings" / "@jupyterlab" / "translation-extension" / "plugin.jupyterlab-settings"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"locale": "es_ES"}) + "\n", encoding="utf-8")
    if importlib.util.find_spec(SPANISH_PACK[0]) is None:
        return (f"JupyterLab's own menus stay in English: its Spanish language pack is not installed "
                f"(pip install {SPANISH_PACK[1]}, or pip install 'fednb[jupyter]')")
    return None


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def run_lab(workdir: Path | None, *, lang: str = "en", port: int = 8888, open_browser: bool = True) -> int:
    """Serve the domains, run JupyterLab until it exits or Ctrl-C; returns an exit status."""
    from fednb.demo import workshop

    if lang not in TOURS:
        raise click.UsageError(f"--lang must be one of {', '.join(TOURS)}")
    root = Path(workdir).expanduser().resolve() if workdir else Path(tempfile.mkdtemp(prefix="fednb-lab-"))
    os.environ["FEDNB_HOME"] = str(root / "fednb-home")  # the profile for the notebooks and the panels
    servers: list = []
    lab: subprocess.Popen | None = None
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a plain kill stops everything in order
    try:
        copy_notebooks(root / "notebooks")
        warning = lab_language(root, lang)
        if warning:
            click.echo(f"warning: {warning}", err=True)
        servers = workshop.serve(root / "domains", port=0)
        for s in servers:
            click.echo(s.banner)
        click.echo(f"ready: {len(servers)} domains; notebooks in {root / 'notebooks'}; starting JupyterLab "
                   f"on http://127.0.0.1:{port} (Ctrl-C stops everything)")
        lab = subprocess.Popen(lab_command(root, lang=lang, port=port, open_browser=open_browser))
        return lab.wait()
    except KeyboardInterrupt:
        click.echo("\nstopping JupyterLab and the domains")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if lab is not None and lab.poll() is None:
            lab.terminate()  # Jupyter shuts its kernels down on SIGTERM
            try:
                lab.wait(timeout=20)
            except subprocess.TimeoutExpired:
                lab.kill()
                lab.wait()
        for s in servers:
            s.stop()
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
