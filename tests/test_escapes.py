"""Escape attempts by approved analyst code, through the real server: each is contained (the request ends
failed or blocked, with a reason naming the wall it hit) and audited (submit, approve, run and exactly one
fail/block row in the hash chain). Afterwards the domain is intact: server up, store unchanged where it
matters, audit chain verified, nothing written outside the job's temp dir. The UNIX-socket attempts
also run against a domain at the "standard" level (no namespaces: seccomp and landlock alone), and
every listener they aim at is real and must have received nothing.

The sandbox's own suite (tests/sandbox/) attacks the walls one by one without a server; this one checks
that what reaches the server ends the same way and leaves a trace the owner can read.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest

from fednb.demo import data
from fednb.domain import Domain
from tests.conftest import start_live

FAST = {"wall_seconds = 120": "wall_seconds = 4", "cpu_seconds = 60": "cpu_seconds = 1",
        "memory_mb = 2048": "memory_mb = 256", "max_output_bytes = 1000000": "max_output_bytes = 20000",
        "max_file_mb = 64": "max_file_mb = 8",
        "show_error_text = false": "show_error_text = true"}  # the reasons name the wall that was hit
DENIED = r"(PermissionError|FileNotFoundError|Operation not permitted|Permission denied)"

# UNIX sockets on the host: pathname sockets reach across network namespaces and Landlock does not
# mediate connect() on them. @SOCKET@ is a listener the test plants (mode 0777, outside /tmp), @ABSTRACT@
# an abstract one in the host's namespace; /dev/log and the D-Bus system bus are planted where free.
IPC_ATTEMPTS = [
    ("UNIX socket to a planted listener", "import socket\ns = socket.socket(socket.AF_UNIX)\n"
     "s.connect('@SOCKET@')\ns.sendall(b'private rows')", "failed", "PermissionError"),
    ("abstract UNIX socket on the host", "import socket\ns = socket.socket(socket.AF_UNIX)\n"
     "s.connect('\\0@ABSTRACT@')\ns.sendall(b'private rows')", "failed", "PermissionError"),
    ("sockets listed in /proc/net/unix", "import socket\nfor line in open('/proc/net/unix').read().splitlines()[1:]:\n"
     "    s = socket.socket(socket.AF_UNIX)\n    s.connect(line.split()[-1])", "failed", DENIED),
    ("syslog through /dev/log", "import socket\n"
     "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'private rows', '/dev/log')", "failed",
     "PermissionError"),
    ("a datagram socketpair aimed at /dev/log", "import socket\na, b = socket.socketpair(socket.AF_UNIX, "
     "socket.SOCK_DGRAM)\na.sendto(b'private rows', '/dev/log')", "failed", "PermissionError"),
    ("the D-Bus system bus", "import socket\ns = socket.socket(socket.AF_UNIX)\n"
     "s.connect('/run/dbus/system_bus_socket')\ns.sendall(b'private rows')", "failed", "PermissionError"),
]

# (id, body of `def job(df):`, final status, what the reason must say). Placeholders: @DOMAIN@ (the domain
# folder), @PORT@ (its API), @SERVER_PID@, @CANARY@ (a host file outside the domain), @HOSTFILE@ (a host
# path a job must not create).
ATTEMPTS = IPC_ATTEMPTS + [
    # -- files outside the data ------------------------------------------------------------------
    ("read /etc/passwd", "return open('/etc/passwd').read()[:20]", "failed", DENIED),
    ("read the store", "return open('@DOMAIN@/domain.db', 'rb').read(16).hex()", "failed", DENIED),
    ("read the store's WAL", "return open('@DOMAIN@/domain.db-wal', 'rb').read(16).hex()", "failed", DENIED),
    ("read the policy", "return open('@DOMAIN@/policy.toml').read()[:20]", "failed", DENIED),
    ("read the server log", "return open('@DOMAIN@/server.log').read()[:20]", "failed", DENIED),
    ("read a token file on the host", "return open('@CANARY@').read()", "failed", DENIED),
    ("read another dataset", "return open('@DOMAIN@/datasets/secret/data.parquet', 'rb').read(8).hex()",
     "failed", DENIED),
    ("climb out with ..", "import os\nreturn open(os.getcwd() + '/../../..' + '@DOMAIN@/domain.db', 'rb').read(8)",
     "failed", DENIED),
    ("symlink to the store", "import os\nos.symlink('@DOMAIN@/domain.db', 'db')\nreturn open('db', 'rb').read(8)",
     "failed", DENIED),
    ("hard link to the store", "import os\nos.link('@DOMAIN@/domain.db', 'db')\nreturn open('db', 'rb').read(8)",
     "failed", DENIED),
    ("/proc/self/environ", "return open('/proc/self/environ', 'rb').read().decode()", "failed", DENIED),
    ("the server's /proc entry", "return open('/proc/@SERVER_PID@/environ', 'rb').read().decode()", "failed", DENIED),
    ("search the disk for stores", "import glob\nhits = glob.glob('/**/domain.db', recursive=True)\n"
     "assert hits, 'no store visible'\nreturn hits", "failed", "no store visible"),
    ("write outside the temp dir", "open('@HOSTFILE@', 'w').write('escaped')\nreturn 1", "failed", DENIED),
    ("write the dataset", "open('@DOMAIN@/datasets/patients/data.parquet', 'ab').write(b'x')\nreturn 1",
     "failed", DENIED),
    # -- network -----------------------------------------------------------------------------------
    ("TCP to the domain's own API", "import socket\nsocket.create_connection(('127.0.0.1', @PORT@), timeout=2)",
     "failed", r"(PermissionError|OSError|unreachable)"),
    ("DNS lookup", "import socket\nreturn socket.getaddrinfo('example.org', 80)", "failed",
     r"(gaierror|PermissionError|OSError)"),
    ("UDP datagram", "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
     "s.sendto(b'x', ('127.0.0.1', 53))", "failed", "PermissionError"),
    ("HTTP with urllib", "import urllib.request\nreturn urllib.request.urlopen('http://127.0.0.1:@PORT@/v1/info', "
     "timeout=2).read()", "failed", r"(URLError|PermissionError)"),
    ("HTTP with httpx", "import httpx\nreturn httpx.get('http://127.0.0.1:@PORT@/v1/info', timeout=2).text",
     "failed", r"(ConnectError|PermissionError)"),
    # -- processes and signals -----------------------------------------------------------------------
    ("subprocess", "import subprocess\nreturn subprocess.run(['id'], capture_output=True).stdout", "failed",
     "PermissionError"),
    ("os.system", "import os\nrc = os.system('touch @HOSTFILE@')\nassert rc == 0, f'system returned {rc}'",
     "failed", "system returned"),
    ("exec a shell", "import os\nos.execv('/bin/sh', ['sh', '-c', 'id'])", "failed", "PermissionError"),
    ("fork bomb", "import os\nwhile True:\n    os.fork()", "failed", "PermissionError"),
    ("fork through ctypes", "import ctypes\nr = ctypes.CDLL(None, use_errno=True).syscall(57)\n"
     "if r < 0:\n    raise OSError(ctypes.get_errno(), 'raw fork refused')\nreturn r", "failed",
     r"raw fork refused"),
    ("ptrace the parent", "import ctypes, os\nr = ctypes.CDLL(None, use_errno=True).ptrace(16, os.getppid(), 0, 0)\n"
     "if r != 0:\n    raise OSError(ctypes.get_errno(), 'ptrace refused')", "failed", "ptrace refused"),
    ("kill the parent", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", "failed",
     r"(PermissionError|ProcessLookupError)"),
    ("kill the server", "import os, signal\nos.kill(@SERVER_PID@, signal.SIGKILL)", "failed",
     r"(PermissionError|ProcessLookupError)"),
    ("thread bomb", "import threading, time\nfor _ in range(100_000):\n"
     "    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()", "failed",
     r"(RuntimeError|can't start new thread|MemoryError|memory)"),
    # -- resources -------------------------------------------------------------------------------------
    ("memory bomb", "x = bytearray(2_000_000_000)\nreturn len(x)", "failed", "out of memory"),
    ("busy loop", "while True:\n    pass", "failed", r"(CPU seconds|wall-clock limit)"),  # wall: a loaded machine
    ("sleep forever", "import time\ntime.sleep(600)", "failed", "wall-clock limit of 4 s"),
    ("fill the disk", "with open('big', 'wb') as f:\n    for _ in range(1000):\n        f.write(b'0' * 2**20)",
     "failed", r"(File too large|No space|OSError)"),
    # -- outputs -----------------------------------------------------------------------------------------
    ("huge output", "return 'x' * 1_000_000", "blocked", "larger than the domain's limit"),
    ("deeply nested output", "x = []\nfor _ in range(10_000):\n    x = [x]\nreturn x", "failed", "nested deeper"),
    ("a pickle in the result", "import os\nclass E:\n    def __reduce__(self):\n        return (os.system, ('id',))\n"
     "return E()", "failed", "cannot release an object"),
    ("pickled bytes", "import pickle\nreturn pickle.dumps({'a': 1})", "failed", "cannot release an object of type bytes"),
    ("forge the result envelope", "import os\nos.write(3, b'{\"status\": \"ok\", \"value\": 42}')\nos._exit(0)",
     "failed", r"."),
    # -- fednb internals -------------------------------------------------------------------------------
    ("open the store with fednb", "from pathlib import Path\nfrom fednb.domain.store.database import Store\n"
     "return [tuple(r) for r in Store(Path('@DOMAIN@/domain.db')).query('SELECT * FROM tokens')]",
     "failed", r"(OperationalError|unable to open)"),
    ("open the domain with fednb", "from fednb.domain import Domain\nreturn Domain('@DOMAIN@').datasets()[0].name",
     "failed", r"(NotFound|not a fednb domain|PermissionError)"),
    ("delete the audit log", "import sqlite3\nc = sqlite3.connect('@DOMAIN@/domain.db')\n"
     "c.execute('DELETE FROM audit')\nc.commit()", "failed", r"(OperationalError|unable to open)"),
    ("inherit the server's environment", "import os\nleaked = {k: v for k, v in os.environ.items() "
     "if k.startswith(('FEDNB', 'PYTHON', 'PYTEST'))}\nassert leaked, 'nothing inherited'\nreturn leaked",
     "failed", "nothing inherited"),
]


class Listeners:
    """Real UNIX listeners on the host, open to everyone: only the sandbox stands in the way."""

    def __init__(self) -> None:
        self.dir = Path(f"/var/tmp/fednb-escapes-{secrets.token_hex(6)}")  # /tmp is masked at "strong"
        self.dir.mkdir(mode=0o755)
        self.abstract = f"fednb-escapes-{secrets.token_hex(6)}"
        self.made: list[Path] = []
        self.socks = [self._listen(str(self.dir / "listener.sock")), self._listen("\0" + self.abstract)]
        for path, kind in (("/dev/log", socket.SOCK_DGRAM), ("/run/dbus/system_bus_socket", socket.SOCK_STREAM)):
            if not os.path.lexists(path) and os.path.isdir(os.path.dirname(path)):
                self.socks.append(self._listen(path, kind))
                self.made.append(Path(path))

    def _listen(self, address: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, kind)
        sock.bind(address)
        if not address.startswith("\0"):
            os.chmod(address, 0o777)
        if kind == socket.SOCK_STREAM:
            sock.listen(8)
        sock.setblocking(False)
        return sock

    def places(self) -> dict:
        return {"@SOCKET@": str(self.dir / "listener.sock"), "@ABSTRACT@": self.abstract}

    def reached(self) -> list[str]:
        """Listeners that received a job's rows (the host's own syslog and D-Bus clients may knock too)."""
        got = []
        for sock in self.socks:
            for sent in _drain(sock):
                if b"private rows" in sent:
                    got.append(str(sock.getsockname()))
        return got

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        for path in self.made + [self.dir / "listener.sock"]:
            path.unlink(missing_ok=True)
        self.dir.rmdir()


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            if sock.type != socket.SOCK_STREAM:
                out.append(sock.recv(65536))
                continue
            conn, _ = sock.accept()
        except BlockingIOError:
            return out
        with conn:
            conn.settimeout(1)
            try:
                out.append(conn.recv(65536))
            except OSError:
                out.append(b"")


@pytest.fixture(scope="module")
def listeners():
    made = Listeners()
    yield made
    made.close()


@pytest.fixture(scope="module")
def target(tmp_path_factory, alice_token, listeners):
    root = tmp_path_factory.mktemp("escapes")
    canary = root / "profiles.json"
    canary.write_text('{"default": {"domains": [{"url": "http://x", "token": "fednb_canary"}]}}')
    hostfile = root / "escaped.txt"
    live = start_live(root, "walled", data.hospital("hospital-a"), alice_token, policy_edits=FAST)
    d = Domain(live.path)
    (root / "secret.csv").write_text("x\n" + "\n".join(str(i) for i in range(50)))
    d.add_dataset(root / "secret.csv", "secret", "another dataset of the same domain")
    d.close()
    data_file = live.path / "datasets" / "patients" / "data.parquet"
    before = hashlib.sha256(data_file.read_bytes()).hexdigest()
    places = {"@DOMAIN@": str(live.path), "@PORT@": str(live.server.port), "@SERVER_PID@": str(live.server.pid),
              "@CANARY@": str(canary), "@HOSTFILE@": str(hostfile), **listeners.places()}
    with httpx.Client(base_url=live.url, timeout=60) as client:
        yield {"live": live, "client": client, "places": places, "hostfile": hostfile, "data_file": data_file,
               "data_sha256": before, "audit_before": _audit_count(live)}
    live.server.stop()


def _audit_count(live) -> int:
    conn = sqlite3.connect(live.path / "domain.db")
    try:
        return conn.execute("SELECT count(*) FROM audit").fetchone()[0]
    finally:
        conn.close()


def _run(target, body: str) -> dict:
    """Submit as the analyst, approve as the owner (over HTTP), wait for the final state."""
    for key, value in target["places"].items():
        body = body.replace(key, value)
    live, client = target["live"], target["client"]
    src = "def job(df):\n" + "\n".join("    " + line for line in body.splitlines()) + "\n"
    submitted = client.post("/v1/requests", headers={"Authorization": f"Bearer {live.token}"},
                            json={"dataset": "patients", "kind": "function", "name": "job", "code": src,
                                  "idempotency_key": uuid.uuid4().hex})
    assert submitted.status_code == 201, submitted.text
    rid = submitted.json()["id"]
    approved = client.post(f"/v1/requests/{rid}/approve", headers={"Authorization": f"Bearer {live.owner_token}"},
                           json={"reason": "escape suite"})
    assert approved.status_code == 200, approved.text
    final = client.get(f"/v1/requests/{rid}?wait=30", headers={"Authorization": f"Bearer {live.token}"}).json()
    return final


@pytest.mark.parametrize("name,body,status,reason", ATTEMPTS, ids=[a[0] for a in ATTEMPTS])
def test_escape_is_contained_and_audited(target, name, body, status, reason):
    final = _run(target, body)
    assert final["status"] == status, (name, final["status"], final.get("reason"))
    assert re.search(reason, final.get("reason") or ""), (name, final.get("reason"))
    assert final["result"] is None
    if "@DOMAIN@" not in body:  # the domain's folder is named only where the analyst named it
        assert str(target["live"].path) not in (final.get("reason") or "")
    # audited: the whole life of the request is in the chain, ending in exactly one fail or block
    owner = {"Authorization": f"Bearer {target['live'].owner_token}"}
    entries = target["client"].get("/v1/audit?limit=10000", headers=owner).json()
    mine = [e for e in entries if e["object_id"] == final["id"]]
    actions = [e["action"] for e in mine]
    assert actions[:2] == ["submit", "approve"] and "run" in actions, actions
    ends = [e for e in mine if e["action"] in ("fail", "block", "release")]
    assert [e["action"] for e in ends] == ["fail" if status == "failed" else "block"], actions
    assert ends[0]["payload"]["reason"] == final["reason"]


def test_the_domain_is_intact_after_every_attempt(target, listeners):
    live = target["live"]
    assert listeners.reached() == [], "a job reached a UNIX socket on the host"
    assert live.server.alive()
    assert not target["hostfile"].exists()
    assert hashlib.sha256(target["data_file"].read_bytes()).hexdigest() == target["data_sha256"]
    d = Domain(live.path)
    try:
        verified = d.verify_audit()
        assert verified.ok, verified.problems
        # every attempt added its rows and none went missing
        assert verified.entries >= target["audit_before"] + 4 * len(ATTEMPTS)
        assert d.authenticate(live.token) == ("alice", "analyst")
    finally:
        d.close()
    # and it still computes
    r = target["client"].post("/v1/requests?wait=20", headers={"Authorization": f"Bearer {live.token}"},
                              json={"dataset": "patients", "kind": "builtin", "name": "count"})
    assert r.json()["status"] == "done" and r.json()["result"]["n"] == 1200


@pytest.fixture(scope="module")
def standard_target(tmp_path_factory, alice_token, listeners):
    """The same domain at the "standard" level: no namespaces, seccomp and landlock carry every wall."""
    live = start_live(tmp_path_factory.mktemp("escapes-standard"), "unwalled", data.hospital("hospital-a"),
                      alice_token, policy_edits={**FAST, "namespaces = true": "namespaces = false"})
    with httpx.Client(base_url=live.url, timeout=60) as client:
        yield {"live": live, "client": client,
               "places": {"@DOMAIN@": str(live.path), "@PORT@": str(live.server.port), **listeners.places()}}
    live.server.stop()


def test_the_standard_level_is_what_the_domain_reports(standard_target):
    info = standard_target["client"].get("/v1/info").json()
    assert info["isolation"]["level"] == "standard", info["isolation"]


@pytest.mark.parametrize("name,body,status,reason", IPC_ATTEMPTS, ids=[a[0] for a in IPC_ATTEMPTS])
def test_ipc_is_contained_at_the_standard_level(standard_target, listeners, name, body, status, reason):
    final = _run(standard_target, body)
    assert final["status"] == status, (name, final["status"], final.get("reason"))
    assert re.search(reason, final.get("reason") or ""), (name, final.get("reason"))
    assert final["result"] is None
    assert listeners.reached() == [], "a job reached a UNIX socket on the host"
