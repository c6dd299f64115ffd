"""``fednb demo --lab``: the domains served, JupyterLab on 127.0.0.1 open on the tour with fednb's
panels seeing the three domains, the user's own profile untouched, the port it really serves printed
when the one asked for is taken, no news prompt, everything stopped by a plain kill, and the user's
edited notebooks kept in ``~/fednb-demo``."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import free_port, wait_for_jupyter

TOKEN = "demo-lab-test"


@pytest.mark.slow
def test_demo_lab_serves_the_domains_and_opens_jupyterlab_on_the_tour(tmp_path):
    asked, home, work = free_port(), tmp_path / "my-home", tmp_path / "fednb-demo"  # the default folder
    env = {**os.environ, "JUPYTER_TOKEN": TOKEN, "FEDNB_HOME": str(home), "HOME": str(tmp_path)}
    log = tmp_path / "demo.log"
    taken = socket.socket()
    taken.bind(("127.0.0.1", asked))
    taken.listen()  # someone else's Jupyter already on the port asked for
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fednb", "demo", "--lab", "--lang", "es",
                                 "--port", str(asked), "--no-browser"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    edited = work / "notebooks" / "es" / "01-recorrido-analista.ipynb"
    try:
        port = _announced_port(log, proc)
        assert port != asked and f"(port {asked} is taken)" in log.read_text()
        base = f"http://127.0.0.1:{port}"
        wait_for_jupyter(base, TOKEN, proc, log, timeout=120)
        news = httpx.get(f"{base}/lab/api/settings/@jupyterlab/apputils-extension:notification",
                         params={"token": TOKEN}, timeout=10)
        assert news.status_code == 200 and news.json()["settings"]["fetchNews"] == "false", news.text[:300]
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
        edited.write_text(edited.read_text().replace("}", "} ", 1))  # the user's edit
        mine = edited.read_text()
    finally:
        taken.close()
        os.kill(proc.pid, signal.SIGTERM)
        status = proc.wait(timeout=60)
    text = log.read_text()
    assert edited.read_text() == mine, "the user's edited notebook must stay"
    assert f"stay in {work}" in text
    assert status == 130, text[-2000:]
    assert "ready: 3 domains" in text and "stopping JupyterLab and the domains" in text
    left = subprocess.run(["pgrep", "-af", str(work)], capture_output=True, text=True)
    assert left.returncode == 1, f"left running:\n{left.stdout}"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/api/status", timeout=2)


def _announced_port(log, proc, timeout: float = 120.0) -> int:
    """The port the demo says JupyterLab is starting on."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"starting JupyterLab on http://127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            pytest.fail(f"fednb demo --lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"fednb demo --lab never said its port:\n{log.read_text()[-3000:]}")
