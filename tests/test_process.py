"""A domain server started from a short-lived thread outlives that thread (Linux's parent-death signal
follows the thread that forked, not the process), and still dies with the process that started it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from fednb.demo import data
from fednb.domain.process import DomainProcess
from tests.conftest import make_domain


def test_a_server_started_from_a_worker_thread_keeps_running(tmp_path):
    make_domain(tmp_path, "threaded", data.hospital("hospital-b")).close()
    server = DomainProcess(tmp_path / "threaded")
    worker = threading.Thread(target=server.start)
    worker.start()
    worker.join()
    time.sleep(1.0)  # the worker thread is gone; before the fix, so was the server (SIGTERM)
    try:
        assert server.alive(), (tmp_path / "threaded" / "server.log").read_text()[-500:]
    finally:
        server.stop()


def test_the_server_still_dies_with_the_process_that_started_it(tmp_path):
    make_domain(tmp_path, "orphan", data.hospital("hospital-b")).close()
    script = (f"import sys, threading; sys.path[:0] = {sys.path!r}\n"
              "from fednb.domain.process import DomainProcess\n"
              f"s = DomainProcess({str(tmp_path / 'orphan')!r})\n"
              "t = threading.Thread(target=s.start); t.start(); t.join()\n"
              "print(s.pid, flush=True)\n")
    parent = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    pid = int(parent.stdout.strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the server {pid} outlived the process that started it")
