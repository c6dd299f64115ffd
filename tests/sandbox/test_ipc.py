"""IPC out of the job: UNIX sockets to listeners on the host, at every isolation level the domain reports.

A pathname UNIX socket lives in the filesystem, so a separate network namespace does not part it
from the job, and Landlock does not mediate ``connect()`` on it: seccomp must refuse to create the
socket (only ``socketpair`` is allowed), and at the "strong" level the mount namespace must also
hide the sockets the host had bound. Every listener here is real, open to everyone (mode 0777, so
only the sandbox stands in the way) and records whatever reaches it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from pathlib import Path

import pytest

from fednb.domain.run.sandbox import Sandbox

from .support import Runner

pytestmark = pytest.mark.usefixtures("unharmed")
PLANT_DIR = Path("/var/tmp")  # not masked by the zygote's mount namespace, unlike /tmp


class Listener:
    """A UNIX listener (stream or datagram) on a pathname or abstract address."""

    def __init__(self, address: str, kind: int = socket.SOCK_STREAM, well_known: bool = False):
        self.address, self.kind, self.well_known = address, kind, well_known
        self.sock = socket.socket(socket.AF_UNIX, kind)
        self.sock.bind(address)
        if not address.startswith("\0"):
            os.chmod(address, 0o777)
        if kind == socket.SOCK_STREAM:
            self.sock.listen(8)
        self.sock.setblocking(False)

    def reached(self) -> list[bytes]:
        """What jobs sent here (at a well-known path the host's own clients may knock too: only the
        jobs' marker counts there)."""
        got = []
        while True:
            try:
                if self.kind != socket.SOCK_STREAM:
                    got.append(self.sock.recv(65536))
                    continue
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return [data for data in got if not self.well_known or b"private rows" in data]
            with conn:
                conn.settimeout(1)
                try:
                    got.append(conn.recv(65536) or b"(connected)")
                except OSError:
                    got.append(b"(connected)")

    def close(self) -> None:
        self.sock.close()
        if not self.address.startswith("\0"):
            Path(self.address).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def plant_dir():
    path = Path(PLANT_DIR / f"fednb-ipc-{secrets.token_hex(6)}")
    path.mkdir(mode=0o755)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def early(plant_dir):
    """Bound before the zygote starts: in the host's /proc/net/unix when the sandbox looks."""
    srv = Listener(str(plant_dir / "early.sock"))
    yield srv
    srv.close()


@pytest.fixture(scope="module", params=["strong", "standard"])
def level(request):
    return request.param


@pytest.fixture(scope="module")
def sandbox(domain, level, early):
    sb = Sandbox(domain.datasets, namespaces=level == "strong")
    iso = sb.start()
    assert iso["level"] == level, iso["details"]
    yield sb
    sb.close()


@pytest.fixture(scope="module")
def run(sandbox, domain) -> Runner:
    return Runner(sandbox, domain)


@pytest.fixture
def late(plant_dir):
    """Bound after the zygote started: only seccomp stands between it and a job."""
    srv = Listener(str(plant_dir / f"late-{secrets.token_hex(4)}.sock"))
    yield srv
    assert srv.reached() == [], "a job reached a UNIX socket on the host"
    srv.close()


@pytest.fixture
def planted(request):
    """A listener at a well-known host path (``request.param``: path, kind), if nothing is there."""
    path, kind = request.param
    if os.path.lexists(path):
        yield None  # a real service: the job must still fail to connect, but we cannot watch it
        return
    made_dir = not os.path.isdir(os.path.dirname(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    srv = Listener(path, kind, well_known=True)
    try:
        yield srv
        assert srv.reached() == [], f"a job reached {path}"
    finally:
        srv.close()
        if made_dir:
            os.rmdir(os.path.dirname(path))


CONNECT = '''
import socket
def f(df, address, kind):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM if kind == "stream" else socket.SOCK_DGRAM)
    if kind == "stream":
        s.connect(address)
        s.sendall(b"private rows")
    else:
        s.sendto(b"private rows", address)
    return "sent"
'''


def assert_denied(out) -> None:
    assert out.status == "error" and out.message.startswith("PermissionError"), (out.status, out.message)


def test_pathname_socket_planted_after_start(run, late):
    assert_denied(run(CONNECT, args={"address": late.address, "kind": "stream"}))


SEEN = '''
import os, stat
def f(df, paths):
    seen = {}
    for p in paths:
        try:
            seen[p] = "socket" if stat.S_ISSOCK(os.stat(p).st_mode) else "not a socket"
        except FileNotFoundError:
            seen[p] = "absent"
    return seen
'''


def test_host_sockets_are_out_of_the_jobs_view_at_the_strong_level(run, early, late, level):
    assert_denied(run(CONNECT, args={"address": early.address, "kind": "stream"}))
    # stat() is not a Landlock right: it shows what the mount namespace leaves in the job's view, for
    # a socket bound before the zygote started and one bound after, and for the usual service paths.
    paths = [early.address, late.address]
    out = run(SEEN, args={"paths": paths + ["/run", "/var/run", "/dev/log", "/etc/passwd"]})
    assert out.status == "ok", out.message
    if level == "standard":  # no mount namespace: seccomp alone stands between the job and these
        assert [out.value[p] for p in paths] == ["socket", "socket"]
    else:
        assert set(out.value.values()) == {"absent"}, out.value
    assert early.reached() == []


def test_datagrams_and_socketpairs_cannot_name_an_address(run, plant_dir):
    target = Listener(str(plant_dir / f"dgram-{secrets.token_hex(4)}.sock"), socket.SOCK_DGRAM)
    code = '''
import socket
def f(df, address):
    found = {}
    def attempt(name, fn):
        try:
            fn()
            found[name] = "ALLOWED"
        except OSError as e:
            found[name] = type(e).__name__
    def pair_send(kind, how):
        a, b = socket.socketpair(socket.AF_UNIX, kind)
        try:
            if how == "sendto":
                a.sendto(b"private rows", address)
            elif how == "sendmsg":
                a.sendmsg([b"private rows"], [], 0, address)
            else:
                a.connect(address)
        finally:
            a.close(); b.close()
    attempt("dgram_socket", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"x", address))
    for kind in ("SOCK_DGRAM", "SOCK_STREAM", "SOCK_SEQPACKET"):
        for how in ("sendto", "sendmsg", "connect"):
            attempt(f"{kind}_pair_{how}", lambda: pair_send(getattr(socket, kind), how))
    return found
'''
    try:
        out = run(code, args={"address": target.address})
        assert out.status == "ok", out.message
        assert "ALLOWED" not in out.value.values(), out.value
        for kind in ("SOCK_DGRAM", "SOCK_SEQPACKET"):  # the pair itself is refused
            assert out.value[f"{kind}_pair_sendto"] == "PermissionError", out.value
        assert target.reached() == []
    finally:
        target.close()


def test_abstract_socket_on_the_host(run):
    srv = Listener(f"\0fednb-ipc-{secrets.token_hex(6)}")
    try:
        assert_denied(run(CONNECT, args={"address": srv.address, "kind": "stream"}))
        assert srv.reached() == []
    finally:
        srv.close()


def test_sockets_discovered_through_proc_net_unix(run, early, late):
    code = '''
import socket
def f(df):
    found = {}
    paths = []
    for table in ("/proc/net/unix", "/proc/self/net/unix", "/proc/1/net/unix"):
        try:
            lines = open(table).read().splitlines()[1:]
            found[table] = "ALLOWED"
            paths += [line.split(None, 7)[7] for line in lines if len(line.split(None, 7)) == 8]
        except OSError as e:
            found[table] = type(e).__name__
    reached = []
    for p in paths:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect("\\0" + p[1:] if p.startswith("@") else p)
            s.sendall(b"private rows")
            reached.append(p)
        except OSError:
            pass
    found["reached"] = reached
    return found
'''
    out = run(code)
    assert out.status == "ok", out.message
    assert out.value["reached"] == []
    assert out.value["/proc/net/unix"] == "PermissionError", out.value  # landlock: no /proc at all
    assert early.reached() == []


@pytest.mark.parametrize("planted", [("/dev/log", socket.SOCK_DGRAM)], indirect=True)
def test_syslog(run, planted):
    code = '''
import logging.handlers, socket, syslog
def f(df):
    syslog.syslog(syslog.LOG_ERR, "private rows")  # glibc drops what it cannot send, silently
    handler = logging.handlers.SysLogHandler(address="/dev/log")  # so does logging
    handler.emit(logging.makeLogRecord({"msg": "private rows"}))
    try:
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"private rows", "/dev/log")
        return "sent"
    except OSError as e:
        return type(e).__name__
'''
    out = run(code)
    assert (out.status, out.value) == ("ok", "PermissionError"), (out.status, out.value, out.message)
    # and the planted listener (when /dev/log was free) saw nothing: checked by the fixture


@pytest.mark.parametrize("planted", [("/run/dbus/system_bus_socket", socket.SOCK_STREAM)], indirect=True)
def test_dbus_system_bus(run, planted):
    assert_denied(run(CONNECT, args={"address": "/run/dbus/system_bus_socket", "kind": "stream"}))


def test_socketpair_still_works_for_honest_code(run, domain):
    code = '''
import asyncio, multiprocessing, socket
def f(df):
    a, b = socket.socketpair()
    a.sendall(b"ping")
    stream = b.recv(4).decode()
    a.close(); b.close()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    a.send(b"one")
    seq = b.recv(8).decode()
    a.close(); b.close()
    left, right = multiprocessing.Pipe()
    left.send({"n": len(df)})
    piped = right.recv()["n"]
    async def main():
        queue = asyncio.Queue()
        await queue.put(int(df["y"].sum()))
        return await queue.get()
    return {"stream": stream, "seq": seq, "pipe": piped, "asyncio": asyncio.run(main()),
            "groupby": df.groupby("g")["x"].count().to_dict()}
'''
    out = run(code)
    assert out.status == "ok", out.message
    frame = domain.frame
    assert out.value == {"stream": "ping", "seq": "one", "pipe": len(frame), "asyncio": int(frame["y"].sum()),
                         "groupby": {k: int(v) for k, v in frame.groupby("g")["x"].count().items()}}


def test_torch_still_works(run, level):
    pytest.importorskip("torch")
    if level != "strong":
        pytest.skip("one level is enough to show torch's own use of the socket API is unaffected")
    code = '''
import torch
def f(df):
    torch.manual_seed(0)
    x = torch.tensor(df[["x", "z"]].to_numpy(), dtype=torch.float32)
    y = torch.tensor(df["y"].to_numpy(), dtype=torch.float32)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=500)
    for xb, yb in loader:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(xb).squeeze(1), yb)
        loss.backward()
        opt.step()
    return float(loss)
'''
    out = run(code, cpu_seconds=30, wall_seconds=60, memory_mb=1500)
    assert out.status == "ok", out.message
    assert out.value > 0


def test_the_self_test_probes_the_ipc_wall(sandbox):
    probe = sandbox.isolation["probe"]
    for check in ("unix_socket", "unix_pathname", "unix_abstract", "unix_dgram_pair", "unix_pair_sendto"):
        assert probe[check] == "PermissionError", (check, probe)
    assert sandbox.isolation["works"] == {"socketpair": "ALLOWED"}
