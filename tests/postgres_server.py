"""A real, throwaway PostgreSQL server for the tests: Debian's ``postgresql`` binaries, a fresh
cluster in a temporary folder, listening on 127.0.0.1 and a free port, stopped at the end.

Used by the persistence tests (the domain's store on PostgreSQL) and by the datasets that stay in
the owner's database. ``.ci/run`` installs the package when it is missing; here a missing server
is a failure with the command that fixes it, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def pg_binary(name: str) -> str:
    for folder in BIN_DIRS:
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed: apt-get install -y postgresql")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_cluster_user() -> tuple[list[str], int | None, int | None]:
    """initdb refuses to run as root: as root, run the server as Debian's ``postgres`` user."""
    if os.geteuid() != 0:
        return [], None, None
    user = pwd.getpwnam("postgres")
    return ["runuser", "-u", "postgres", "--"], user.pw_uid, user.pw_gid


@contextlib.contextmanager
def running_postgres(root: Path) -> Iterator[str]:
    """Start a cluster under ``root``; yields a superuser URL (``postgresql://postgres@127.0.0.1:PORT/postgres``)."""
    prefix, uid, gid = _as_cluster_user()
    if uid is not None:  # the cluster user must reach its folder: pytest's temporary root is 0700
        root = Path(tempfile.mkdtemp(prefix="fednb-postgres-"))
    data = root / "pgdata"
    sockets = root / "pgsock"
    for folder in (root, sockets):
        folder.mkdir(parents=True, exist_ok=True)
        if uid is not None:
            os.chown(folder, uid, gid)
    port = _free_port()
    _run([*prefix, pg_binary("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
          "--encoding=UTF8", "--locale=C"])
    log = root / "postgres.log"
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} -c fsync=on"
    # each domain process pools a few connections; tests open many domains (and threads) at once
    options += " -c max_connections=400"
    _run([*prefix, pg_binary("pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"])
    try:
        _wait_until_accepting(port)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        if uid is not None:
            shutil.rmtree(root, ignore_errors=True)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")


def _wait_until_accepting(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not accept connections on 127.0.0.1:{port} within {timeout:.0f} s")


def create_database(admin_url: str, name: str) -> str:
    """A fresh, empty database on the server; returns its URL."""
    base = admin_url.rsplit("/", 1)[0]
    port = base.rsplit(":", 1)[1]
    _run([pg_binary("createdb"), "-h", "127.0.0.1", "-p", port, "-U", "postgres", name])
    return f"{base}/{name}"
