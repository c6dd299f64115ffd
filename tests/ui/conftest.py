"""JupyterLab with fednb, two real domains and a headless Chromium (Debian's /usr/bin/chromium).

One session: hospital-a and hospital-b serve with only histograms and crosstabs auto-approved, so
the other built-ins wait for the owner; the analyst (alice) has a fednb profile with both; the owner (olga) reviews
hospital-a through its folder and hospital-b through its URL and an owner token. JupyterLab runs
with that profile's FEDNB_HOME, so its kernels and its server extension act as alice and olga.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fednb.demo import data
from fednb.domain.domain import new_token
from fednb.models import BUILTINS
from tests.conftest import LiveDomain, free_port, start_live, wait_for_jupyter

CHROMIUM = "/usr/bin/chromium"
TOKEN = "fednb-ui-tests"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
AUTO_APPROVE_ALL = "auto_approve = [" + ", ".join(f'"{b}"' for b in BUILTINS) + "]"  # policy.toml's default


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/ui/" in str(item.fspath):
            item.add_marker(pytest.mark.ui)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (the UI tests drive Debian's Chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run", "--disable-sync"]}


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@dataclass
class Federation:
    root: Path
    home: Path
    a: LiveDomain
    b: LiveDomain
    token: str

    @property
    def domains(self) -> list[LiveDomain]:
        return [self.a, self.b]


@pytest.fixture(scope="session")
def federation(tmp_path_factory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("lab")
    token = new_token()
    manual = {AUTO_APPROVE_ALL: 'auto_approve = ["histogram", "crosstab"]'}
    a = start_live(root, "hospital-a", data.hospital("hospital-a"), token, policy_edits=manual)
    b = start_live(root, "hospital-b", data.hospital("hospital-b"), token, policy_edits=manual)
    home = root / "fednb-home"
    env_home = os.environ.get("FEDNB_HOME")
    os.environ["FEDNB_HOME"] = str(home)
    try:
        from fednb.client import profile

        profile.save("default", [{"url": a.url, "token": token}, {"url": b.url, "token": token}])
        profile.save_owner("default", [{"path": str(a.path)}, {"url": b.url, "token": b.owner_token}])
    finally:
        if env_home is None:
            os.environ.pop("FEDNB_HOME")
        else:
            os.environ["FEDNB_HOME"] = env_home
    yield Federation(root, home, a, b, token)
    a.server.stop()
    b.server.stop()


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"token {self.token}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def kernel_state(self, notebook: str) -> str | None:
        for s in self.api("GET", "/api/sessions").json():
            if s.get("path") == notebook:
                return s["kernel"]["execution_state"]
        return None


@pytest.fixture(scope="session")
def lab(federation: Federation, tmp_path_factory) -> Iterator[Lab]:
    if shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("JupyterLab is not installed: pip install -c constraints.txt -e '.[all]'")
    base = tmp_path_factory.mktemp("jupyter")
    root = base / "notebooks"
    settings = base / "settings"
    root.mkdir()
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port = free_port()
    env = {**os.environ, "FEDNB_HOME": str(federation.home), "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    env.pop("FEDNB_PROFILE", None)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
           "--KernelManager.shutdown_wait_time=1"]  # a kernel that dawdles at exit is killed, not waited for
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = base / "jupyter.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_for_jupyter(url, TOKEN, proc, log)
    yield Lab(url, TOKEN, root, log)
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(autouse=True)
def screenshot_on_failure(request):
    """A picture of the page a failed browser test left, in artifacts/screenshots/failed-*.png."""
    yield
    report = getattr(request.node, "rep_call", None)
    page = request.node.funcargs.get("page")
    if report is not None and report.failed and page is not None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=SCREENSHOTS / f"failed-{request.node.name.split('[')[0]}.png")
        except Exception:  # the page may be gone; the failure itself is what matters
            pass


@pytest.fixture(scope="module")
def page(browser, lab):
    """One browser page per test module, the size the screenshots are taken at."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    yield page
    context.close()
