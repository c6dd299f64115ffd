"""A domain that is not root: the zygote enters a user namespace (one-uid map) instead.

The test process is root, so it builds that situation in a child: a private mount namespace
where /root (0700) exposes only the interpreter, then drops to uid 65534 and runs a Sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import fednb

SCRIPT = r'''
import ctypes, json, os, sys
root, dom = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
from fednb.domain.run.sandbox import namespaces as ns
ns.unshare(ns.CLONE_NEWNS)
ns.mount(None, "/", None, ns.MS_REC | ns.MS_PRIVATE)
prefix = os.path.realpath(sys.base_prefix)
hidden = ns.untraversable_ancestor(prefix)
if hidden:
    fd = os.open(prefix, os.O_PATH)
    ns.mount("tmpfs", hidden, "tmpfs", 0, "mode=0755,size=1m")
    os.makedirs(prefix)
    ns.mount(f"/proc/self/fd/{fd}", prefix, None, ns.MS_BIND | ns.MS_REC)
os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # dumpable again, as a process started by a non-root user is
from fednb.domain.run.sandbox import JobSpec, Limits, Sandbox
out = {}
with Sandbox(f"{dom}/datasets") as sb:
    out["isolation"] = sb.isolation
    def run(name, code):
        o = sb.run(JobSpec("n", code, "f", {}, f"{dom}/datasets/d.csv", "csv", probe_fraction=None,
                           limits=Limits(wall_seconds=5)))
        out[name] = [o.status, o.value, o.message]
    run("groupby", "def f(df):\n    return df.groupby('g')['x'].sum().to_dict()\n")
    run("tokens", f"def f(df):\n    return open('{dom}/tokens').read()\n")
    run("fork", "import os\ndef f(df):\n    os.fork()\n")
    run("connect", "import socket\ndef f(df):\n    socket.create_connection(('8.8.8.8', 53), timeout=1)\n")
    run("caps", "import ctypes\ndef f(df):\n    d = (ctypes.c_uint32 * 6)()\n"
               "    ctypes.CDLL(None).syscall(125, (ctypes.c_uint32 * 2)(0x20080522, 0), d)\n    return d[0] | d[3]\n")
print(json.dumps(out))
'''


def test_sandbox_as_an_unprivileged_user():
    dom = Path(tempfile.mkdtemp(prefix="fednb-nonroot-"))  # under /tmp: reachable by uid 65534
    try:
        (dom / "datasets").mkdir()
        (dom / "datasets" / "d.csv").write_text("g,x\na,1\nb,2\na,3\n")
        (dom / "tokens").write_text("TOKEN-SECRET\n")
        for p in (dom, dom / "datasets", dom / "datasets" / "d.csv", dom / "tokens"):
            os.chown(p, 65534, 65534)
        os.chmod(dom / "tokens", 0o600)
        root = str(Path(fednb.__file__).resolve().parent.parent)
        proc = subprocess.run([sys.executable, "-c", SCRIPT, root, str(dom)], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(dom, ignore_errors=True)
    iso = out["isolation"]
    assert iso["userns"] and iso["netns"] and iso["mountns"] and iso["pidns"] and iso["seccomp"]
    assert iso["level"] == "strong" and not iso["uid_drop"], iso["details"]
    assert out["groupby"][:2] == ["ok", {"a": 4, "b": 2}]
    assert out["tokens"][0] == "error" and "TOKEN-SECRET" not in out["tokens"][2]
    assert out["fork"][0] == "error" and out["connect"][0] == "error"
    assert out["caps"][:2] == ["ok", 0]  # uid 0 inside the user namespace, but no capability
