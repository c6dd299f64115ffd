"""A wheel built once (with node) installs on a machine without node, with JupyterLab seeing the
prebuilt extension and the server extension enabled (scripts/check_wheel.sh)."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_the_wheel_carries_the_prebuilt_extension_and_installs_without_node(tmp_path):
    run = subprocess.run(["bash", str(ROOT / "scripts" / "check_wheel.sh"), str(tmp_path)],
                         env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=300)
    out = ANSI.sub("", run.stdout + run.stderr)
    assert run.returncode == 0, out[-3000:]
    assert "node: none" in out
    assert re.search(r"fednb-jupyterlab v\S+ enabled OK \(python, fednb\)", out), out
    assert re.search(r"fednb\.jupyter enabled\s+- Validating fednb\.jupyter\.\.\.\s+fednb\.jupyter\s+OK", out), out
    wheel = next((tmp_path / "dist").glob("fednb-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    data = next(n.split("share/")[0] for n in names if "/share/jupyter/" in n)  # fednb-VERSION.data/data/
    for needed in ("share/jupyter/labextensions/fednb-jupyterlab/package.json",
                   "share/jupyter/labextensions/fednb-jupyterlab/install.json",
                   "share/jupyter/labextensions/fednb-jupyterlab/schemas/fednb-jupyterlab/plugin.json",
                   "etc/jupyter/jupyter_server_config.d/fednb.json"):
        assert data + needed in names, needed
    assert any(re.search(r"labextensions/fednb-jupyterlab/static/remoteEntry\.\w+\.js$", n) for n in names)
    assert not any("node_modules" in n or n.endswith(".ts") for n in names)
    for tour in ("fednb/notebooks/en/01-analyst-tour.ipynb", "fednb/notebooks/es/01-recorrido-analista.ipynb"):
        assert tour in names, tour  # `fednb demo --lab` copies them from the installed package
    found = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), "-c",
                            "from fednb.demo.lab import notebooks_source; print(notebooks_source())"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert found.returncode == 0 and "site-packages" in found.stdout, found.stdout + found.stderr
