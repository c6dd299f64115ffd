"""Local domains on this machine, for the demo, tutorials, tests and benchmarks: make a domain
folder from a DataFrame, serve several at once, stop them all."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from fednb.domain import Domain
from fednb.domain.process import DomainProcess

if TYPE_CHECKING:  # serving local domains (the workshop's, for hours) needs no pandas
    import pandas as pd


def create_domain(root: Path, name: str, frame: pd.DataFrame, dataset: str, *, description: str = "",
                  dataset_description: str = "", token: str | None = None, analyst: str = "ana",
                  policy_edits: dict[str, str] | None = None, store: str | None = None) -> Domain:
    """``root/name``: a domain with ``frame`` as ``dataset``; ``policy_edits`` replaces lines of its
    policy.toml (each must be there); ``token`` invites ``analyst`` with it; ``store`` a PostgreSQL URL
    for its state (SQLite in the folder otherwise). Returns it open."""
    d = Domain.init(Path(root) / name, name, description, store=store)
    if policy_edits:
        path = d.path / "policy.toml"
        text = path.read_text()
        for old, new in policy_edits.items():
            if old not in text:
                raise ValueError(f"policy.toml has no line {old!r}")
            text = text.replace(old, new)
        path.write_text(text)
        d.close()
        d = Domain(d.path)
    csv = Path(root) / f"{name}-{dataset}.csv"
    frame.to_csv(csv, index=False)
    d.add_dataset(csv, dataset, dataset_description)
    if token:
        d.invite(analyst, token=token)
    return d


def serve(folders: list[Path], *, host: str = "127.0.0.1", port: int = 0) -> list[DomainProcess]:
    """Start a server for each folder, all at once; returns them once every one listens. ``port``:
    the first folder's (the others take the next ones); 0 picks free ports."""
    servers = [DomainProcess(f, host=host, port=port + i if port else 0) for i, f in enumerate(folders)]
    try:
        for s in servers:
            s.launch()
        for s in servers:
            s.wait_ready()
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


@contextlib.contextmanager
def serving(folders: list[Path]) -> Iterator[list[DomainProcess]]:
    """:func:`serve`, stopping every server on the way out."""
    servers = serve(folders)
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()
