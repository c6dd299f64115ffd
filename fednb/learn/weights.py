"""Model weights as safetensors bytes (never pickle), and conversions between torch and numpy."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load as load_numpy
from safetensors.torch import save as save_torch

from fednb.tensors import METADATA_KEY


def encode(state: dict[str, torch.Tensor], inputs: dict[str, Any] | None = None) -> bytes:
    """A state dict as safetensors, with the round's ``inputs`` in the metadata."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    metadata = {METADATA_KEY: json.dumps(inputs or {})}
    return save_torch(tensors, metadata=metadata)


def decode(data: bytes) -> dict[str, np.ndarray]:
    return load_numpy(data)


def to_numpy(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in state.items()}


def to_torch(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}


def save_numpy(weights: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in weights.items()}, metadata=metadata)
