"""A dataset written to Parquet and opened in the domain's engine, for the tests that compare a
built-in computed in the engine with the same built-in in memory."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fednb.domain.data.engines.duckdb import ParquetEngine
from fednb.domain.release.disclosure import Blocked
from fednb.domain.review.policy import DisclosureSection
from fednb.domain.run import builtins
from fednb.domain.run.builtins.registry import select
from fednb.domain.run.builtins.scan import Scan
from fednb.errors import InvalidInput


@contextlib.contextmanager
def parquet_engine(folder: Path, frame: pd.DataFrame, memory_limit: str = "128MB") -> Iterator[ParquetEngine]:
    """``frame`` as ``folder/data.parquet`` (no index: row ids are row positions, as a registered
    dataset's) in a one-thread engine under ``memory_limit``, closed on the way out."""
    path = folder / "data.parquet"
    frame.to_parquet(path, index=False)
    engine = ParquetEngine(path, memory_limit=memory_limit, threads=1)
    try:
        yield engine
    finally:
        engine.close()


class BothPaths:
    """A built-in computed in memory (on the selected rows of a frame) and in the engine, each giving
    its answer with the row evidence, or the text of the refusal it raised, so tests compare them."""

    def __init__(self, name: str, args_model: Any, in_memory_built_in: Callable, public: dict[str, list]):
        self.name, self.args_model, self.built_in, self.public = name, args_model, in_memory_built_in, public

    def in_memory(self, frame: pd.DataFrame, args: dict, inputs: dict | None = None, rules=None):
        """The in-memory path on the selected rows, with its evidence (or the refusal it raises)."""
        parsed = self.args_model.model_validate({**args, **(inputs or {})})
        ctx = builtins.Context(rules or DisclosureSection(), self.public)
        try:
            return self.built_in(parsed, select(frame, parsed.where), ctx), ctx.evidence
        except (Blocked, InvalidInput) as exc:
            return type(exc).__name__ + ": " + str(exc), {}

    def in_engine(self, engine, args: dict, inputs: dict | None = None, rules=None, monkeypatch=None):
        """The engine path; with ``monkeypatch``, reading the rows into pandas fails the test."""
        if monkeypatch is not None:
            monkeypatch.setattr(Scan, "frame", lambda *a, **k: pytest.fail(f"{self.name} read its rows into pandas"))
        ctx = builtins.Context(rules or DisclosureSection(), self.public)
        try:
            return builtins.compute(self.name, args, engine, ctx, inputs), ctx.evidence
        except (Blocked, InvalidInput) as exc:
            return type(exc).__name__ + ": " + str(exc), {}
        finally:
            if monkeypatch is not None:
                monkeypatch.undo()
