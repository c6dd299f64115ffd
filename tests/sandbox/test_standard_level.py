"""Without namespaces ("standard"): landlock + seccomp + rlimits carry every wall alone.

On this machine the interpreter lives under /root (0700), so without a mount namespace to mask it
a per-job uid could not import Python: jobs keep uid 0 with every capability dropped.
"""

from __future__ import annotations

import os
import socket
import sys

import pytest

from fednb.domain.run.sandbox import Sandbox
from fednb.domain.run.sandbox.namespaces import world_readable

from .support import DB_SECRET, SECRET, TOKEN_SECRET, Runner, descendants


@pytest.fixture(scope="module")
def sandbox(domain):
    sb = Sandbox(domain.datasets, namespaces=False)
    sb.start()
    yield sb
    sb.close()


def test_reported_level(sandbox):
    iso = sandbox.isolation
    assert iso["level"] == "standard", iso["details"]
    assert not (iso["netns"] or iso["mountns"] or iso["pidns"])
    assert iso["seccomp"] and iso["landlock_abi"] >= 6
    assert iso["uid_drop"] == world_readable(sys.base_prefix)
    if not iso["uid_drop"]:
        assert "not readable by other users" in iso["details"]


def test_normal_job(run, domain):
    out = run("def f(df):\n    return df.groupby('g')['y'].sum().to_dict()\n", fmt="parquet")
    assert out.status == "ok", out.message
    assert out.value == {k: int(v) for k, v in domain.frame.groupby("g")["y"].sum().items()}


@pytest.mark.parametrize("which", ["db", "tokens", "passwd", "environ", "dotdot"])
def test_files(run, domain, which):
    path = {"db": str(domain.db), "tokens": str(domain.tokens), "passwd": "/etc/passwd",
            "environ": "/proc/1/environ", "dotdot": str(domain.datasets / ".." / "tokens")}[which]
    out = run(f"def f(df):\n    return open({path!r}, 'rb').read().decode(errors='replace')\n")
    assert out.status == "error" and out.message.startswith("PermissionError"), out.message
    assert DB_SECRET not in out.message and TOKEN_SECRET not in out.message


def test_no_capabilities_and_no_secret(run):
    code = '''
import ctypes, os
def f(df, secret):
    libc = ctypes.CDLL(None, use_errno=True)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    libc.syscall(125, header, data)  # capget
    open("mine", "w").close()
    try:
        os.chown("mine", 12345, 12345)
        chown = "ALLOWED"
    except OSError as e:
        chown = type(e).__name__
    return {"cap_effective": data[0] | data[3], "cap_permitted": data[1] | data[4], "chown": chown,
            "secret": any(secret in v for v in os.environ.values())}
'''
    out = run(code, args={"secret": SECRET})
    assert out.status == "ok", out.message
    assert out.value == {"cap_effective": 0, "cap_permitted": 0, "chown": "PermissionError", "secret": False}


def test_network_and_processes(run, sandbox):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.3)
    try:
        out = run("import socket\ndef f(df, p):\n    socket.create_connection(('127.0.0.1', p), timeout=2)\n",
                  args={"p": srv.getsockname()[1]})
        assert out.status == "error" and out.message.startswith("PermissionError"), out.message
        with pytest.raises(TimeoutError):
            srv.accept()
    finally:
        srv.close()
    for code in ("import os\ndef f(df):\n    os.fork()\n",
                 "import subprocess\ndef f(df):\n    subprocess.run(['/bin/true'])\n",
                 "import os\ndef f(df, p):\n    os.kill(p, 9)\n",
                 "import os\ndef f(df, p):\n    os.kill(-1, 9)\n"):
        out = run(code, args={"p": os.getpid()} if "p)" in code else None)
        assert out.status == "error" and out.message.startswith("PermissionError"), (code, out.message)
    assert descendants(sandbox.zygote_pid) == set()


def test_limits(run):
    assert run("def f(df):\n    return len(bytearray(10**11))\n").status == "memory"
    assert run("import time\ndef f(df):\n    time.sleep(30)\n", wall_seconds=1).status == "timeout"


@pytest.fixture(scope="module")
def run(sandbox, domain):
    return Runner(sandbox, domain)
