"""The owner's administration of a domain's datasets: adding one, so that a kill at any moment leaves
all of it or none, and the public clamping bounds of its numeric columns.

:class:`~fednb.domain.domain.Domain` keeps the methods (``add_dataset``, ``set_bounds``) and
delegates here; this module only needs the domain's folder, store, policy and change listeners.
pandas loads only when a file is actually read (:mod:`fednb.domain.data.datasets`).
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from fednb.domain.audit import log as audit
from fednb.domain.names import check_name, owner_actor
from fednb.domain.store import datasets as dataset_rows
from fednb.errors import InvalidInput, NotFound
from fednb.locale import N_
from fednb.models import Dataset

if TYPE_CHECKING:
    from fednb.domain.domain import Domain

BOUNDED_KINDS = ("numeric", "integer", "boolean")


def add(domain: Domain, file: str | os.PathLike, name: str, description: str = "") -> Dataset:
    """Register ``file`` as dataset ``name`` (replacing one of that name, keeping its bounds).

    The row (marked pending) and its audit entry commit first; then the files move into place and
    the row is marked ready. A kill before the commit leaves only staged files (cleared on open);
    a kill after it is finished on open (:func:`finish_interrupted`): never half a dataset.
    """
    from fednb.domain.data import datasets

    check_name("dataset name", name)
    source = Path(file)
    if not source.is_file():
        raise InvalidInput(f"{source} is not a file")
    staging = domain.path / dataset_rows.STAGING / f"{os.getpid()}-{secrets.token_hex(4)}"
    try:
        meta, data_file, rows = datasets.register(staging, source, name, description, domain.policy,
                                                  seed=int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    kept = domain.bounds(name) if dataset_rows.exists(domain.store.connect(), name) else {}
    for c in meta.columns:
        if c.name in kept and c.kind in BOUNDED_KINDS:
            c.bounds = kept[c.name]
    with domain.store.transaction() as tx:
        dataset_rows.put_pending(tx, name, str(data_file.relative_to(domain.path)), meta.model_dump_json(), rows)
        audit.append(tx, owner_actor(), "dataset", name,
                     {"rows": meta.rows, "columns": [c.name for c in meta.columns], "description": description,
                      "mock": {k: meta.mock[k] for k in ("tier", "status", "report_sha256")} if meta.mock else None})
    install(domain, name, data_file.relative_to(domain.path))
    shutil.rmtree(staging, ignore_errors=True)
    domain.changed()
    return meta


def install(domain: Domain, name: str, staged_file: Path) -> None:
    """Move a pending dataset's staged files into place (idempotent), then mark its row ready."""
    staged, target = (domain.path / staged_file).parent, domain.path / "datasets" / name
    if staged.exists():
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)
    with domain.store.transaction() as tx:
        dataset_rows.mark_ready(tx, name, str(Path("datasets") / name / staged_file.name))


def finish_interrupted(domain: Domain) -> None:
    """After a crash in :func:`add`: finish the datasets whose row committed, and drop the staged
    files of additions that died before theirs did (never those of one still running)."""
    for name, staged_file in dataset_rows.pending(domain.store.connect()):
        install(domain, name, Path(staged_file))
    staging = domain.path / dataset_rows.STAGING
    for folder in staging.iterdir() if staging.is_dir() else ():
        if not process_alive(folder.name.split("-", 1)[0]):
            shutil.rmtree(folder, ignore_errors=True)


def process_alive(pid: str) -> bool:
    """Whether process ``pid`` still runs (a folder not named after a pid is left alone)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True
    return True


def set_bounds(domain: Domain, dataset: str, column: str, lo: float, hi: float) -> Dataset:
    """The owner's clamping bounds for noisy sums, means and variances of a numeric column.

    They are public (analysts see them in the metadata), so choose them from what the column can
    mean (ages 0..120), never from the private values; changing them is recorded in the audit log.
    """
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InvalidInput(f"bounds must be finite numbers with LO < HI; got {lo} and {hi}")
    with domain.store.transaction() as tx:
        found_meta = dataset_rows.meta_json(tx, dataset)
        if found_meta is None:
            raise NotFound(N_("this domain has no dataset {dataset!r}").format(dataset=dataset))
        meta = Dataset.model_validate_json(found_meta)
        found = [c for c in meta.columns if c.name == column]
        if not found:
            raise InvalidInput(f"dataset {dataset!r} has no column {column!r}; it has {[c.name for c in meta.columns]}")
        if found[0].kind not in BOUNDED_KINDS:
            raise InvalidInput(f"column {column!r} is {found[0].kind}; bounds are for numeric columns")
        found[0].bounds = [float(lo), float(hi)]
        dataset_rows.set_meta_json(tx, dataset, meta.model_dump_json())
        audit.append(tx, owner_actor(), "bounds", dataset, {"column": column, "bounds": [float(lo), float(hi)]})
    return meta
