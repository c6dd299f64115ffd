"""``fednb demo --lab``: the workshop's three domains on this machine and JupyterLab open on the tour.

Everything lives in one folder, ``--dir`` or ``~/fednb-demo``, which is kept: the domains, a private
``FEDNB_HOME`` with the ``workshop`` profile the notebooks and the panels read (so the user's own
``~/.fednb`` is never touched), JupyterLab's settings for the demo, and a copy of the notebooks to
edit freely (a second run reopens them with the user's edits). JupyterLab listens on 127.0.0.1 only,
on the port asked for or, when that one is taken, the next free one, said before it starts; it stops,
with the domains, on Ctrl-C or SIGTERM. JupyterLab's "official Jupyter news?" prompt, which covers
the outputs a class is looking at, is answered "no" in the demo's settings (:func:`quiet_lab_settings`,
also what Binder's ``postBuild`` runs).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click

from fednb.errors import InvalidInput

TOURS = {"en": "01-analyst-tour.ipynb", "es": "01-recorrido-analista.ipynb"}
DEFAULT_DIR = Path("~/fednb-demo")
# JupyterLab asks "Would you like to get notified about official Jupyter news?" while fetchNews is
# "none"; "false" answers it (jupyterlab docs, user/announcements: the Binder recipe)
NO_NEWS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false"}}
PORT_TRIES = 50  # as Jupyter's own --ServerApp.port_retries
SETTINGS = "jupyterlab-settings"  # the demo's JupyterLab user settings, in its folder


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


def quiet_lab_settings(settings_dir: Path) -> Path:
    """Merge :data:`NO_NEWS` into ``settings_dir/overrides.json`` (JupyterLab's application-wide
    defaults; ``<sys.prefix>/share/jupyter/lab/settings`` for an environment); returns the file."""
    path = Path(settings_dir) / "overrides.json"
    current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for plugin, values in NO_NEWS.items():
        current.setdefault(plugin, {}).update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
    return path


def demo_user_settings(root: Path) -> Path:
    """The demo's own JupyterLab user settings, news prompt answered; kept if the user changed them."""
    folder = root / SETTINGS
    for plugin, values in NO_NEWS.items():
        package, _, name = plugin.partition(":")
        path = folder / package / f"{name}.jupyterlab-settings"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
    return folder


def choose_port(preferred: int) -> int:
    """``preferred`` if free on 127.0.0.1, else the next free one (0: any free port). Jupyter is then
    told not to move on by itself, so the URL we print is the one it serves."""
    for port in ([0] if preferred == 0 else range(preferred, preferred + PORT_TRIES + 1)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise InvalidInput(f"ports {preferred} to {preferred + PORT_TRIES} on 127.0.0.1 are all taken; "
                       "pick another with --port N, or --port 0 for any free port")


def lab_command(root: Path, *, lang: str, port: int, open_browser: bool) -> list[str]:
    """The JupyterLab command line: 127.0.0.1 on exactly ``port``, the notebooks folder, the tour
    open, the demo's settings (news prompt off, the language: :func:`lab_language`), fednb's panels
    on the ``workshop`` profile."""
    opens = f"/lab/tree/{lang}/{TOURS[lang]}"
    return [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0", f"--LabApp.user_settings_dir={root / SETTINGS}",
            f"--ServerApp.root_dir={root / 'notebooks'}", f"--ServerApp.default_url={opens}",
            f"--LabApp.default_url={opens}", "--Fednb.profile=workshop",
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
    settings = root / SETTINGS / "@jupyterlab" / "translation-extension" / "plugin.jupyterlab-settings"
    settings.parent.mkdir(parents=True, exist_ok=True)  # written each time: the folder is kept between runs
    settings.write_text(json.dumps({"locale": "en" if lang == "en" else "es_ES"}) + "\n", encoding="utf-8")
    if lang == "en":
        return None
    if importlib.util.find_spec(SPANISH_PACK[0]) is None:
        return (f"JupyterLab's own menus stay in English: its Spanish language pack is not installed "
                f"(pip install {SPANISH_PACK[1]}, or pip install 'fednb[jupyter]')")
    return None


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def run_lab(workdir: Path | None, *, lang: str = "en", port: int = 8888, open_browser: bool = True) -> int:
    """Serve the domains, run JupyterLab until it exits or Ctrl-C; returns an exit status. The
    folder is kept: it holds the user's copy of the notebooks."""
    from fednb.demo import workshop

    if lang not in TOURS:
        raise click.UsageError(f"--lang must be one of {', '.join(TOURS)}")
    root = Path(workdir or DEFAULT_DIR).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.environ["FEDNB_HOME"] = str(root / "fednb-home")  # the profile for the notebooks and the panels
    servers: list = []
    lab: subprocess.Popen | None = None
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a plain kill stops everything in order
    try:
        copy_notebooks(root / "notebooks")
        demo_user_settings(root)
        actual = choose_port(port)
        warning = lab_language(root, lang)
        if warning:
            click.echo(f"warning: {warning}", err=True)
        servers = workshop.serve(root / "domains", port=0)
        for s in servers:
            click.echo(s.banner)
        moved = f" (port {port} is taken)" if port not in (0, actual) else ""
        click.echo(f"ready: {len(servers)} domains; notebooks in {root / 'notebooks'}; starting JupyterLab "
                   f"on http://127.0.0.1:{actual}{moved} (Ctrl-C stops everything)")
        lab = subprocess.Popen(lab_command(root, lang=lang, port=actual, open_browser=open_browser))
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
        click.echo(f"your notebooks and the demo's domains stay in {root} (delete the folder when you are done)")
