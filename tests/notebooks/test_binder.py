"""Binder, replayed without Docker: scripts/binder_replay.sh builds a fresh environment from binder/,
runs postBuild and start, and checks that the domains answer, JupyterLab serves and opens on the
tour with fednb's extension and panels, and the tour runs there."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_binder_files_pin_cpu_torch_and_are_executable():
    requirements = (REPO / "binder" / "requirements.txt").read_text()
    lines = [line.strip() for line in requirements.splitlines() if line.strip() and not line.startswith("#")]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    assert "torch==2.13.0+cpu" in lines
    pinned = re.search(r"^torch==([\d.]+)", (REPO / "constraints.txt").read_text(), re.M)
    assert pinned and pinned.group(1) == "2.13.0"  # the replay's constraint is the same release
    for script in ("postBuild", "start"):
        assert os.access(REPO / "binder" / script, os.X_OK), f"binder/{script} must be executable"
    assert 'exec "$@"' in (REPO / "binder" / "start").read_text()


@pytest.mark.timeout(2400)  # a fresh environment is installed: minutes at rest, more under load
def test_binder_replay_passes():
    env = {k: v for k, v in os.environ.items() if k != "FEDNB_HOME"}
    out = subprocess.run(["bash", str(REPO / "scripts" / "binder_replay.sh")], capture_output=True, text=True,
                         timeout=2300, env=env)
    print(out.stdout[-4000:])
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    for step in ("2/3 binder/postBuild", "3/3 binder/start", "hospital-a      patients  1200",
                 "opens /lab/tree/notebooks/en/01-analyst-tour.ipynb",
                 "fednb panels: analyst sees ['hospital-a', 'hospital-b', 'ylb-uyuni']",
                 "fednb-jupyterlab v", "OK: Binder replay passed"):
        assert step in out.stdout
    work = re.search(r"working in (\S+)", out.stdout).group(1)
    left = subprocess.run(["pgrep", "-af", work], capture_output=True, text=True)
    assert left.returncode == 1, f"the replay left processes running:\n{left.stdout}"
    assert not Path(work).exists()
