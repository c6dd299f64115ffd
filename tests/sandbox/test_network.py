"""Network: no TCP/UDP anywhere, no DNS, no HTTP, no abstract unix sockets across jobs."""

from __future__ import annotations

import socket
import threading

import pytest

pytestmark = pytest.mark.usefixtures("unharmed")


class Listener:
    """A real server on this host's loopback; records whether anything connected."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]

    def accepted(self) -> list:
        got = []
        try:
            while True:
                got.append(self.sock.accept())
        except (TimeoutError, OSError):
            pass
        return got


@pytest.fixture
def listener():
    srv = Listener()
    yield srv
    assert srv.accepted() == [], "a job reached the domain's loopback server"
    srv.sock.close()


def test_tcp_to_a_listening_port_on_loopback(run, listener):
    port = listener.port
    code = ("import socket\ndef f(df, port):\n    s = socket.create_connection(('127.0.0.1', port), timeout=2)\n"
            "    s.sendall(b'rows')\n    return 'connected'\n")
    out = run(code, args={"port": port})
    assert out.status == "error" and out.message.startswith(("PermissionError", "OSError")), out.message


def test_tcp_to_an_external_address(run):
    code = "import socket\ndef f(df):\n    socket.create_connection(('8.8.8.8', 53), timeout=2)\n"
    out = run(code)
    assert out.status == "error" and out.message.startswith(("PermissionError", "OSError")), out.message


def test_udp_and_raw_and_netlink_sockets(run):
    code = '''
import socket
def f(df):
    found = {}
    for name, args in {"udp": (socket.AF_INET, socket.SOCK_DGRAM), "udp6": (socket.AF_INET6, socket.SOCK_DGRAM),
                       "raw": (socket.AF_INET, socket.SOCK_RAW, 1), "netlink": (socket.AF_NETLINK, socket.SOCK_RAW, 0),
                       "packet": (socket.AF_PACKET, socket.SOCK_RAW, 0)}.items():
        try:
            socket.socket(*args).close()
            found[name] = "ALLOWED"
        except OSError as e:
            found[name] = type(e).__name__
    return found
'''
    out = run(code)
    assert out.status == "ok", out.message
    assert "ALLOWED" not in out.value.values(), out.value


def test_dns_lookup(run):
    out = run("import socket\ndef f(df):\n    return socket.getaddrinfo('example.com', 80)\n")
    assert out.status == "error" and out.message.startswith(("gaierror", "PermissionError", "OSError")), out.message


def test_urllib_and_http_client(run, listener):
    port = listener.port
    out = run(f"import urllib.request\ndef f(df):\n    return urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=2).read()\n")
    assert out.status == "error" and out.message.startswith("URLError"), out.message
    out = run(f"import http.client\ndef f(df):\n    c = http.client.HTTPConnection('127.0.0.1', {port}, timeout=2)\n"
              "    c.request('POST', '/leak', body='rows')\n    return c.getresponse().status\n")
    assert out.status == "error" and out.message.startswith(("PermissionError", "OSError")), out.message


def test_abstract_unix_socket_between_two_jobs(run):
    # Two concurrent jobs share the zygote's network namespace: seccomp (no socket()) and landlock's
    # scoping must keep them apart.
    server = '''
import socket, time
def f(df):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind("\\0fednb-test-rendezvous")
        s.listen(1)
        s.settimeout(3)
        conn, _ = s.accept()
        return conn.recv(100).decode()
    except OSError as e:
        return "nothing: " + type(e).__name__
'''
    client = '''
import socket, time
def f(df):
    time.sleep(0.5)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("\\0fednb-test-rendezvous")
    s.sendall(b"secret rows")
    return "sent"
'''
    results = {}
    t = threading.Thread(target=lambda: results.setdefault("server", run(server)))
    t.start()
    results["client"] = run(client)
    t.join()
    assert results["client"].status == "error", results["client"].value
    assert results["client"].message.startswith(("PermissionError", "ConnectionRefusedError")), results["client"].message
    assert results["server"].status == "ok" and results["server"].value.startswith("nothing"), results["server"].value
