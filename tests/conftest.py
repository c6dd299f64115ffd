"""Shared fixtures: real domain folders and real ``fednb domain serve`` processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from fednb.demo import data
from fednb.demo.local import create_domain
from fednb.domain import Domain
from fednb.domain.domain import new_token
from fednb.domain.process import DomainProcess

os.environ.setdefault("FEDNB_HOME", "/tmp/fednb-test-home")


@dataclass
class LiveDomain:
    """A domain folder with a running server, an analyst token and an owner token."""

    name: str
    path: Path
    server: DomainProcess
    token: str
    owner_token: str
    frame: pd.DataFrame

    @property
    def url(self) -> str:
        return self.server.url

    def domain(self) -> Domain:
        return Domain(self.path)


def make_domain(root: Path, name: str, frame: pd.DataFrame, *, dataset: str = "patients", token: str | None = None,
                policy_edits: dict[str, str] | None = None, store: str | None = None) -> Domain:
    """A domain folder with one dataset (alice invited with ``token``); ``policy_edits`` replaces
    lines of policy.toml; ``store`` a PostgreSQL URL (SQLite in the folder if None)."""
    return create_domain(root, name, frame, dataset, description=f"test domain {name}",
                         dataset_description=f"{dataset} of {name}", token=token, analyst="alice",
                         policy_edits=policy_edits, store=store)


def start_live(root: Path, name: str, frame: pd.DataFrame, token: str, **kwargs) -> LiveDomain:
    d = make_domain(root, name, frame, token=token, **kwargs)
    owner = d.invite("olga", role="owner")
    d.close()
    server = DomainProcess(root / name)
    server.start()
    return LiveDomain(name, root / name, server, token, owner, frame)


def owners_approving(live: list[LiveDomain], reason: str = "reviewed"):
    """While the block runs, the owners of ``live`` approve every pending request as it arrives."""
    from fednb.demo.workshop import approving

    return approving({d.name: d.path for d in live}, None, reason, every=0.1)


@contextlib.contextmanager
def live_domains(root: Path, frames: dict[str, pd.DataFrame], token: str, **kwargs) -> Iterator[list[LiveDomain]]:
    """Several served domains (``{name: frame}``) whose owners pinned one another for secure
    aggregation, stopped on the way out."""
    from fednb.domain.release.trusted_peers import pin_each_other

    live = [start_live(root, name, frame, token, **kwargs) for name, frame in frames.items()]
    pin_each_other([d.path for d in live])
    try:
        yield live
    finally:
        for d in live:
            d.server.stop()


@pytest.fixture(scope="session")
def alice_token() -> str:
    return new_token()


@pytest.fixture(scope="session")
def hospitals(tmp_path_factory, alice_token) -> Iterator[list[LiveDomain]]:
    """Two hospital domains with different case mixes, served for the whole session."""
    with live_domains(tmp_path_factory.mktemp("hospitals"), {n: data.hospital(n) for n in data.HOSPITALS},
                      alice_token) as live:
        yield live


@pytest.fixture(scope="session")
def fed(hospitals, alice_token):
    import fednb

    f = fednb.connect([d.url for d in hospitals], token=alice_token)
    yield f
    f.close()


@pytest.fixture(scope="session")
def truth(hospitals) -> pd.DataFrame:
    """The two hospitals' rows concatenated: what pooled results must equal."""
    return pd.concat([d.frame for d in hospitals], ignore_index=True)


@pytest.fixture(scope="session")
def patients(fed):
    return fed.dataset("patients")


@pytest.fixture
def fresh_domain(tmp_path, alice_token) -> Iterator[LiveDomain]:
    """A served hospital domain for one test (for tests that change or kill it)."""
    live = start_live(tmp_path, "hospital-t", data.hospital("hospital-a"), alice_token)
    yield live
    live.server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request) -> str | None:
    """Each store a domain can keep its state in: None (SQLite in the domain folder), or the URL of a
    fresh database on the session's real PostgreSQL server. The durability tests run on both."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def durable_domain(tmp_path, alice_token, store_url) -> Iterator[LiveDomain]:
    """:func:`fresh_domain` on each store (``store_url``)."""
    live = start_live(tmp_path, "hospital-t", data.hospital("hospital-a"), alice_token, store=store_url)
    yield live
    live.server.stop()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a hung domain."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    conns = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(sock.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    t.join()
    for c in conns:
        c.close()
    sock.close()


def load_benchmark(name: str):
    """A script of ``benchmarks/`` as a module, by its path: the bare name ``benchmarks`` is taken in
    site-packages by a dependency (opacus ships a top-level ``benchmarks`` package)."""
    import importlib.util
    import sys

    key = f"fednb_benchmark_{name}"
    if key not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[key]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_jupyter(url: str, token: str, proc, log: Path, timeout: float = 60.0) -> None:
    """Wait until the Jupyter server at ``url`` answers; fail with its log if it exits or stalls."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[:4]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/api/status", params={"token": token}, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"JupyterLab did not start within {timeout:g} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)



@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory) -> Iterator[str]:
    """A real PostgreSQL server for this test session (tests/postgres_server.py)."""
    from tests.postgres_server import running_postgres

    with running_postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture
def postgres_database(postgres_admin_url, request) -> str:
    """A fresh database on the session's server, named after the test."""
    from tests.postgres_server import create_database

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    name += "_" + str(abs(hash(request.node.nodeid)) % 10**6)
    return create_database(postgres_admin_url, name)
