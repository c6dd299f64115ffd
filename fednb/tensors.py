"""Model weights on the wire: the safetensors format, never pickle.

A safetensors buffer is an 8-byte little-endian header length, a JSON header naming each tensor's
dtype, shape and byte range, then the raw bytes (https://github.com/huggingface/safetensors). The
domain only needs the header: to check that an update has exactly the model's parameters (so its
size is bounded by the parameter count) and to read the round's inputs, which travel in the
header's ``__metadata__``. Parsing it needs neither torch nor any code execution.
"""

from __future__ import annotations

import json
import struct
from typing import Any

MAX_HEADER = 10_000_000
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
METADATA_KEY = "fednb"


class TensorFormatError(ValueError):
    """Bytes that are not a well-formed safetensors buffer."""


def header(data: bytes) -> tuple[dict[str, dict], dict[str, str]]:
    """(tensors {name: {"dtype", "shape", "data_offsets"}}, metadata) of a safetensors buffer, checked."""
    if len(data) < 8:
        raise TensorFormatError("too short to be safetensors")
    (size,) = struct.unpack("<Q", data[:8])
    if size > MAX_HEADER or 8 + size > len(data):
        raise TensorFormatError("the safetensors header size is out of range")
    try:
        parsed = json.loads(data[8:8 + size])
    except (ValueError, UnicodeDecodeError):
        raise TensorFormatError("the safetensors header is not JSON") from None
    if not isinstance(parsed, dict):
        raise TensorFormatError("the safetensors header is not an object")
    metadata = parsed.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise TensorFormatError("safetensors metadata must map strings to strings")
    body = len(data) - 8 - size
    spans = []
    for name, info in parsed.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise TensorFormatError(f"tensor {name!r} is malformed")
        dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_BYTES or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise TensorFormatError(f"tensor {name!r} has a bad dtype or shape")
        count = 1
        for d in shape:
            count *= d
        if not (0 <= start <= end <= body) or end - start != count * DTYPE_BYTES[dtype]:
            raise TensorFormatError(f"tensor {name!r} has byte offsets that do not match its shape")
        spans.append((start, end))
    spans.sort()
    covered = 0
    for start, end in spans:
        if start != covered:
            raise TensorFormatError("the tensors do not tile the buffer exactly")
        covered = end
    if covered != body:
        raise TensorFormatError("the buffer has bytes no tensor accounts for")
    return parsed, metadata


def signature(tensors: dict[str, dict]) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {name: (info["dtype"], tuple(info["shape"])) for name, info in tensors.items()}


def parameter_count(tensors: dict[str, dict]) -> int:
    total = 0
    for info in tensors.values():
        count = 1
        for d in info["shape"]:
            count *= d
        total += count
    return total


def inputs_of(metadata: dict[str, str]) -> dict[str, Any]:
    """The round's JSON inputs carried in the metadata (``{}`` when absent)."""
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise TensorFormatError("the round inputs in the metadata are not JSON") from None
    if not isinstance(value, dict):
        raise TensorFormatError("the round inputs must be a JSON object")
    return value
