"""A training run's checkpoint: the global weights (safetensors) and its state (JSON), written each
round atomically, so a restarted kernel resumes where it stopped."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fednb.learn import weights as W

STATE = "state.json"  # written last, atomically: it names the round's files, so a kill mid-way is harmless


@dataclass
class Checkpoint:
    round: int
    code_hash: str
    requests: dict[str, str]          # domain URL -> its training request id
    history: list[dict[str, Any]] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    strategy: dict[str, np.ndarray] = field(default_factory=dict)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(folder: str | os.PathLike, cp: Checkpoint) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights, strategy = f"global-{cp.round}.safetensors", f"strategy-{cp.round}.safetensors"
    _write(folder / weights, W.save_numpy(cp.weights))
    _write(folder / strategy, W.save_numpy(cp.strategy))
    state = {"round": cp.round, "code_hash": cp.code_hash, "requests": cp.requests, "history": cp.history,
             "weights": weights, "strategy": strategy}
    _write(folder / STATE, json.dumps(state, default=float).encode())
    for old in folder.glob("*.safetensors"):
        if old.name not in (weights, strategy):
            old.unlink()


def load(folder: str | os.PathLike) -> Checkpoint | None:
    folder = Path(folder)
    if not (folder / STATE).exists():
        return None
    state = json.loads((folder / STATE).read_text())
    return Checkpoint(round=state["round"], code_hash=state["code_hash"], requests=state["requests"],
                      history=state["history"], weights=W.decode((folder / state["weights"]).read_bytes()),
                      strategy=W.decode((folder / state["strategy"]).read_bytes()))
