"""``fednb domain serve`` on a port that is taken says so in one line, and how to pick another."""

from __future__ import annotations

import socket
import subprocess
import sys

from fednb.demo import data
from tests.conftest import make_domain


def test_a_busy_port_is_one_line_naming_the_port_and_the_fix(tmp_path):
    make_domain(tmp_path, "hospital-a", data.hospital("hospital-a")).close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "fednb", "domain", "serve", str(tmp_path / "hospital-a"),
                              "--port", str(port)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    (line,) = [x for x in out.stderr.splitlines() if x.strip()]
    assert f"port {port} on 127.0.0.1 is already in use" in line and "--port 0" in line
