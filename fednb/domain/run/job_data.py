"""The file a custom job reads its rows from, for datasets whose rows stay in the owner's store.

A dataset kept as Parquet in the domain is handed to the sandbox as it is (its path; the job's
reader takes only the declared columns, :mod:`fednb.domain.run.sandbox.harness_data`). A table in
the owner's PostgreSQL or Spark has no file, and the job must never hold the connection: its URL
carries the domain's credentials, and a job that could connect could read every column and every
other table the role may read. So the domain reads the rows here, outside the sandbox, through the
dataset's engine (:mod:`fednb.domain.data.engines`: a ``READ ONLY`` transaction under the
statement timeout, with the read-only role the owner registered) and writes only the declared
columns to a Parquet file of the job's own under ``datasets/.job-data`` (mode 0600), the one folder
the sandbox may read besides the datasets themselves. The job then loads that file exactly as it
would a Parquet dataset; the file is removed when the job has loaded it (a training worker) or ended.

The job's frame is numbered 0, 1, ... as a Parquet file's rows are, but the store's rows have ids
of their own (PostgreSQL's ``ctid``, Spark's file and row index: :data:`~fednb.domain.data.engines.base.ROW_ID`),
which the built-ins' releases are remembered by. So the rows behind a custom job's release are
translated back to those ids (:meth:`JobData.store_evidence`) before the differencing defence
(:mod:`fednb.domain.release.differencing`) compares them with every earlier release on the dataset.

The owner's ``max_rows_loaded`` is applied in the store before any row leaves it: ``SELECT count(*)
FROM (SELECT 1 FROM data LIMIT cap + 1)`` stops scanning at the first row past the cap and returns
one number, so an over-cap table is refused without being read whole, however large it has grown
since it was registered. The rows are then read with ``LIMIT cap + 1`` too, so a table that grows
between the two queries is still refused rather than loaded past the cap.
"""

from __future__ import annotations

import os
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING, Any

import numpy as np

from fednb.domain.data.catalog import process_alive
from fednb.domain.data.engines.base import ROW_ID, SOURCE_FILE
from fednb.domain.review.data_access import rows_over_cap
from fednb.locale import N_

if TYPE_CHECKING:
    import pandas as pd

    from fednb.domain.domain import Domain
    from fednb.domain.review.policy import Policy

#: The folder, inside the sandbox's datasets folder, that holds the rows read for running jobs.
JOB_DATA = ".job-data"


class RowsNotLoaded(Exception):
    """The job's rows were not loaded: the store holds more than the owner's ``max_rows_loaded``, or
    reading them took longer than the job may run; the message says which, for the analyst."""


def kept_in_store(data_path: Path) -> bool:
    """Whether a dataset's registered file names a store (``source.json``) rather than Parquet."""
    return Path(data_path).name == SOURCE_FILE


def clear_left_behind(domain_path: Path) -> None:
    """Remove the copies that jobs of processes no longer running left (killed between read and
    removal); the files are named after the process that wrote them, and other live processes serving
    the same domain keep theirs."""
    folder = Path(domain_path) / "datasets" / JOB_DATA
    for found in folder.iterdir() if folder.is_dir() else ():
        if not process_alive(found.name.split("-", 1)[0]):
            found.unlink(missing_ok=True)


def bounded_count(engine: Any, limit: int) -> int:
    """How many rows the engine's table has, counted only up to ``limit`` (the store stops there)."""
    found = engine.query(f"SELECT count(*) AS n FROM (SELECT 1 FROM data LIMIT {int(limit)}) AS bounded")
    return int(found.iloc[0, 0])


def read_columns(engine: Any, columns: list[str] | None, policy: Policy) -> pd.DataFrame:
    """The declared ``columns`` (None: all) of every row, in row-id order and indexed by row id,
    refusing a table over the policy's ``max_rows_loaded`` before reading it, and a read that outlasts
    the job's wall-clock limit (``[sandbox] wall_seconds``: each statement has the store's own timeout,
    but a long table is fetched in many) (raises RowsNotLoaded)."""
    cap = policy.sandbox.max_rows_loaded
    if cap:
        refused = rows_over_cap(bounded_count(engine, cap + 1), policy)
        if refused:
            raise RowsNotLoaded(refused)
    wanted = list(engine.columns()) if columns is None else list(columns)
    picked = ", ".join(_quoted(c) for c in [ROW_ID, *wanted])
    sql = f"SELECT {picked} FROM data ORDER BY {_quoted(ROW_ID)}" + (f" LIMIT {int(cap) + 1}" if cap else "")
    import pandas as pd

    # in pieces (a server-side cursor on PostgreSQL): the rows never stand in the domain's memory as
    # Python objects all at once, only as the frame's columns
    deadline = monotonic() + policy.sandbox.wall_seconds
    pieces = []
    for piece in engine.batches(sql):
        pieces.append(piece)
        if monotonic() > deadline:
            raise RowsNotLoaded(N_("reading the dataset's rows from the owner's database took longer than a job may "
                                   "run ({seconds:g} s); nothing ran. Declare fewer columns, or ask the owner for a "
                                   "row cap (max_rows_loaded)").format(seconds=policy.sandbox.wall_seconds))
    if not pieces:  # an engine may stream an empty result as no piece at all
        pieces = [pd.DataFrame(columns=[ROW_ID, *wanted])]
    frame = pieces[0] if len(pieces) == 1 else pd.concat(pieces, ignore_index=True)
    del pieces
    refused = rows_over_cap(len(frame), policy)
    if refused:  # the table grew past the cap between the two queries
        raise RowsNotLoaded(refused)
    frame.index = pd.Index(frame.pop(ROW_ID).to_numpy(), name=None)
    return frame


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class JobData:
    """One job's rows: the dataset's own file, or a private Parquet copy of the declared columns of
    a table in the owner's store, read when first asked for and removed by :meth:`close`."""

    def __init__(self, domain: Domain, dataset: str, columns: list[str] | None, job_id: str):
        self.domain = domain
        self.dataset = dataset
        self.columns = columns
        self.job_id = job_id
        self.frame: pd.DataFrame | None = None  # the rows read from the store, numbered 0.. (None for a file)
        self.row_ids: np.ndarray | None = None  # the store's id of each of those rows
        self._written: Path | None = None

    def path(self) -> str:
        """The file to hand the sandbox (raises RowsNotLoaded, EngineError)."""
        registered = self.domain.data_path(self.dataset)
        if not kept_in_store(registered):
            return str(registered)
        if self._written is None:
            engine = self.domain.engine(self.dataset)
            try:
                read = read_columns(engine, self.columns, self.domain.policy)
            finally:
                engine.close()
            self.row_ids = read.index.to_numpy(dtype=np.int64)
            self.frame = read.reset_index(drop=True)
            self._written = self._write(self.frame)
        return str(self._written)

    def _write(self, frame: pd.DataFrame) -> Path:
        folder = self.domain.path / "datasets" / JOB_DATA
        folder.mkdir(mode=0o700, exist_ok=True)
        target = folder / f"{os.getpid()}-{self.job_id}.parquet"
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as sink:
            frame.to_parquet(sink, index=False)
        return target

    def store_evidence(self, evidence: dict[str, Any]) -> dict[str, Any]:
        """An output check's evidence (row positions in the job's frame) in the store's row ids."""
        from fednb.domain.release import differencing

        if self.row_ids is None or not evidence:
            return evidence
        return {kind: [differencing.evidence(self.row_ids[_positions(found)]) for found in sets]
                for kind, sets in evidence.items()}

    def close(self) -> None:
        """Remove the private copy (the job has its rows, or has ended)."""
        if self._written is not None:
            self._written.unlink(missing_ok=True)
            self._written = None

    def __enter__(self) -> JobData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _positions(found: dict[str, Any]) -> np.ndarray:
    """The row positions a :func:`fednb.domain.release.differencing.evidence` record holds."""
    import base64

    from pyroaring import BitMap

    return np.asarray(list(BitMap.deserialize(base64.b64decode(found["bitmap"]))), dtype=np.int64)
