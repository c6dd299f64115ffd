"""Memory of a Binder-like workshop session, to compare with Binder's limit (mybinder.org gives each
session between 1 and 2 GB): the demo's three domains (``fednb workshop serve``, as ``binder/start``
runs it), JupyterLab, and a kernel running the federated-learning notebook (a real training run, with
the domains' sandboxes). The peer in the same run: JupyterLab with a kernel that imports pandas, the
plainest Jupyter session, measured first.

Memory is PSS (proportional set size, ``/proc/PID/smaps_rollup``): shared pages are split between the
processes sharing them, so the sum over a session's processes is what it really holds (RSS counts a
shared library once per process). Sampled every ``--every`` seconds; the peak of each sum is reported.

    python benchmarks/workshop_memory.py [--notebook notebooks/en/04-federated-learning.ipynb] [--skip-training]

Prints JSON lines: one per phase, then a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BINDER_LIMIT_MB = 2048  # mybinder.org: at least 1 GB guaranteed, at most 2 GB per session


def binder_env() -> dict[str, str]:
    """The variables ``binder/start`` exports with a default (``export NAME="${NAME:-VALUE}"``): the
    session measured here runs with them, as a Binder session does."""
    found = re.findall(r'^export (\w+)="\$\{\1:-([^}]*)\}"', (ROOT / "binder" / "start").read_text(), re.MULTILINE)
    return dict(found)


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_of(pid: int, tree: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += tree.get(p, [])
    return out


def command(pid: int) -> str:
    """The end of a process's command line (a domain's folder, ``-m ...``), to tell processes apart."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[-90:].strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


class Sampler:
    """Peak PSS (MB) of named process trees, summed, in a background thread; ``NAME_process_only``
    is the root process without its children (a kernel without the domains a notebook starts)."""

    def __init__(self, roots: dict[str, int], every: float):
        self.roots, self.every = roots, every
        self.peak: dict[str, float] = {}
        self.peak_total = 0.0
        self.at_peak: list[dict] = []  # every process at the peak of the sum: where the memory was
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        tree, roots = children(), dict(self.roots)  # a copy: the kernel's root is added while sampling
        each = {name: {p: pss_kb(p) for p in tree_of(pid, tree)} for name, pid in roots.items()}
        sizes = {name: sum(found.values()) / 1024 for name, found in each.items()}
        own = {f"{name}_process_only": each[name].get(pid, 0) / 1024 for name, pid in roots.items()}  # without children
        for name, mb in {**sizes, **own}.items():
            self.peak[name] = max(self.peak.get(name, 0.0), mb)
        if sum(sizes.values()) > self.peak_total:
            self.peak_total = sum(sizes.values())
            self.at_peak = sorted(({"tree": name, "pid": p, "pss_mb": round(kb / 1024), "cmd": command(p)}
                                   for name, found in each.items() for p, kb in found.items() if kb),
                                  key=lambda row: -row["pss_mb"])

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen, str, str]:
    port, token = free_port(), "workshop-memory"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}", "--ServerApp.port_retries=0"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(workdir / "jupyter.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/status", headers={"Authorization": f"token {token}"}, timeout=2).is_success:
                return proc, url, token
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"JupyterLab did not start; see {workdir / 'jupyter.log'}")


def start_domains(env: dict[str, str], workdir: Path) -> subprocess.Popen:
    log_path = workdir / "workshop.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "fednb", "workshop", "serve", str(workdir / "domains"),
                             "--port", "0"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if any(line.startswith("ready:") for line in log_path.read_text(errors="replace").splitlines()):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise SystemExit(f"the workshop's domains did not start; see {log_path}")


def run_notebook(path: Path, env: dict[str, str], cwd: Path, on_kernel) -> float:
    """Execute ``path`` in a kernel of our own; ``on_kernel(pid)`` as soon as it runs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=1800, resources={"metadata": {"path": str(cwd)}})
    started = time.perf_counter()
    with client.setup_kernel(env=env):
        on_kernel(client.km.provisioner.process.pid)
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    return time.perf_counter() - started


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def baseline(env: dict[str, str], workdir: Path, every: float) -> dict:
    """The peer: JupyterLab and a kernel that imported pandas, nothing of fednb's running."""
    lab, _, _ = start_lab(env, workdir)
    try:
        import nbformat

        path = workdir / "plain.ipynb"
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("import pandas as pd\nimport numpy as np\n"
                                              "pd.DataFrame(np.zeros((1000, 10))).describe()")]
        nbformat.write(nb, path)
        roots = {"jupyterlab": lab.pid}
        with Sampler(roots, every) as sampler:
            run_notebook(path, env, workdir, lambda pid: roots.__setitem__("kernel", pid))
            time.sleep(every * 2)
        return {"phase": "plain_jupyter", "peak_pss_mb": round(sampler.peak_total),
                **{f"{k}_mb": round(v) for k, v in sampler.peak.items()}}
    finally:
        stop(lab)


def session(env: dict[str, str], workdir: Path, notebook: Path | None, every: float) -> tuple[dict, dict]:
    """(idle, running the notebook): the three domains and JupyterLab, then with the notebook's kernel."""
    domains = start_domains(env, workdir)
    lab, _, _ = start_lab(env, workdir)
    try:
        roots = {"domains": domains.pid, "jupyterlab": lab.pid}
        with Sampler(roots, every) as idle:
            time.sleep(every * 3)
        out = {"phase": "workshop_idle", "peak_pss_mb": round(idle.peak_total),
               **{f"{k}_mb": round(v) for k, v in idle.peak.items()}}
        print(json.dumps(out), flush=True)
        if notebook is None:
            return out, out
        with Sampler(roots, every) as training:
            seconds = run_notebook(notebook, env, workdir, lambda pid: roots.__setitem__("kernel", pid))
        return out, {"phase": "workshop_notebook", "notebook": str(notebook.relative_to(ROOT)),
                "seconds": round(seconds, 1), "peak_pss_mb": round(training.peak_total),
                **{f"{k}_mb": round(v) for k, v in training.peak.items()}, "at_peak": training.at_peak}
    finally:
        stop(lab)
        stop(domains)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notebook", type=Path, default=ROOT / "notebooks" / "en" / "04-federated-learning.ipynb")
    parser.add_argument("--skip-training", action="store_true", help="domains and JupyterLab only (a quick check)")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between samples")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="workshop-memory-") as tmp:
        workdir = Path(tmp)
        env = {**binder_env(), **os.environ, "FEDNB_HOME": str(workdir / "home"), "PLOTLY_RENDERER": "plotly_mimetype",
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        plain = baseline(env, workdir, args.every)
        print(json.dumps(plain), flush=True)
        idle, full = session(env, workdir, None if args.skip_training else args.notebook.resolve(), args.every)
        if not args.skip_training:
            print(json.dumps(full), flush=True)
        if full.get("kernel_mb", 1) == 0:
            raise SystemExit("the notebook's kernel was never sampled; the figures above are incomplete")
        peak = max(idle["peak_pss_mb"], full["peak_pss_mb"])
        print(json.dumps({"benchmark": "workshop_memory", "session_peak_pss_mb": peak,
                          "plain_jupyter_peak_pss_mb": plain["peak_pss_mb"],
                          "fednb_extra_mb": peak - plain["peak_pss_mb"],
                          "binder_limit_mb": BINDER_LIMIT_MB,
                          "share_of_limit": round(peak / BINDER_LIMIT_MB, 2),
                          "notebook": None if args.skip_training else str(args.notebook),
                          "binder_env": binder_env()}), flush=True)


if __name__ == "__main__":
    main()
