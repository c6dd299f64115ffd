"""``fednb demo --lab``: the domains served, JupyterLab on 127.0.0.1 open on the tour with fednb's
panels seeing the three domains, the user's own profile untouched, and everything stopped by a plain
kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import free_port, wait_for_jupyter

TOKEN = "demo-lab-test"


@pytest.mark.slow
def test_demo_lab_serves_the_domains_and_opens_jupyterlab_on_the_tour(tmp_path):
    port, home, work = free_port(), tmp_path / "my-home", tmp_path / "demo"
    env = {**os.environ, "JUPYTER_TOKEN": TOKEN, "FEDNB_HOME": str(home), "HOME": str(tmp_path)}
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fednb", "demo", "--lab", "--lang", "es", "--dir", str(work),
                                 "--port", str(port), "--no-browser"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_jupyter(base, TOKEN, proc, log, timeout=120)
        home_page = httpx.get(f"{base}/", params={"token": TOKEN}, follow_redirects=False, timeout=10)
        assert urlsplit(home_page.headers["location"]).path == "/lab/tree/es/01-recorrido-analista.ipynb"
        for path in ("en/01-analyst-tour.ipynb", "es/01-recorrido-analista.ipynb", "es/05-privacidad.ipynb"):
            nb = httpx.get(f"{base}/api/contents/{path}", params={"token": TOKEN, "content": 0}, timeout=10)
            assert nb.status_code == 200 and nb.json()["type"] == "notebook", (path, nb.status_code)
        panel = httpx.get(f"{base}/fednb/api/analyst/domains", params={"token": TOKEN}, timeout=30)
        assert panel.status_code == 200, panel.text[:300]
        assert sorted(d["domain"] for d in panel.json() if d["up"]) == ["hospital-a", "hospital-b", "ylb-uyuni"]
        review = httpx.get(f"{base}/fednb/api/owner/requests", params={"token": TOKEN}, timeout=30)
        assert sorted(d["domain"] for d in review.json()["domains"]) == ["hospital-a", "hospital-b", "ylb-uyuni"]
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        local = {line.split()[3] for line in listening.splitlines()}
        assert local == {f"127.0.0.1:{port}"}, listening
        assert not home.exists(), "the demo must not write the user's own FEDNB_HOME"
        assert (work / "fednb-home" / "profiles.json").is_file()
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        status = proc.wait(timeout=60)
    text = log.read_text()
    assert status == 130, text[-2000:]
    assert "ready: 3 domains" in text and "stopping JupyterLab and the domains" in text
    left = subprocess.run(["pgrep", "-af", str(work)], capture_output=True, text=True)
    assert left.returncode == 1, f"left running:\n{left.stdout}"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/api/status", timeout=2)
