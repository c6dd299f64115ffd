"""Frames on the result and input pipes: an 8-byte header, a JSON envelope, optional raw bytes.

JSON only (never pickle); raw bytes carry tensors as safetensors later.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time

from fednb.codec import MAX_DEPTH as CODEC_MAX_DEPTH

HEADER = struct.Struct("!II")  # json length, blob length
# The codec's deepest output: a tagged dict ({"items": [[k, v]]}) costs 3 JSON levels per level of
# its own limit, plus the envelope and a table's rows. Anything deeper was not written by the codec.
MAX_DEPTH = 3 * CODEC_MAX_DEPTH + 8


class FrameError(ValueError):
    """Bytes that are not one well-formed frame."""


def pack(envelope: dict, blob: bytes | None = None) -> bytes:
    body = json.dumps(envelope, allow_nan=False, separators=(",", ":")).encode()
    blob = blob or b""
    return HEADER.pack(len(body), len(blob)) + body + blob


def unpack(data: bytes) -> tuple[dict, bytes | None]:
    """Parse exactly one frame. Malformed, too deep or trailing bytes raise FrameError."""
    if len(data) < HEADER.size:
        raise FrameError("no result frame")
    n_json, n_blob = HEADER.unpack_from(data)
    if HEADER.size + n_json + n_blob != len(data):
        raise FrameError("result frame has the wrong length")
    try:
        envelope = json.loads(data[HEADER.size:HEADER.size + n_json], parse_constant=_no_constant,
                              parse_float=_finite_float)
    except (ValueError, RecursionError) as e:  # RecursionError: "[[[[..." bombs
        raise FrameError(f"result is not valid JSON ({type(e).__name__})") from None
    if not isinstance(envelope, dict):
        raise FrameError("result envelope is not an object")
    if _depth_exceeds(envelope, MAX_DEPTH):
        raise FrameError(f"result is nested deeper than {MAX_DEPTH} levels")
    blob = data[HEADER.size + n_json:] if n_blob else None
    return envelope, blob


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # json.loads accepts NaN/Infinity unless told otherwise


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _depth_exceeds(value: object, limit: int) -> bool:
    """Iterative (a recursive walk could itself overflow on the values it is checking)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def write_all(fd: int, data: bytes, deadline: float | None = None) -> None:
    """Write everything to ``fd``; with a deadline the fd must be non-blocking."""
    view = memoryview(data)
    poller = None
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            if deadline is None:
                raise
            if poller is None:
                poller = select.poll()
                poller.register(fd, select.POLLOUT)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("write timed out") from None
            poller.poll(left * 1000)
            continue
        view = view[n:]


class Reader:
    """Reads a pipe with a deadline and a byte cap (the domain side)."""

    def __init__(self, fd: int):
        self.fd = fd
        os.set_blocking(fd, False)
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN | select.POLLHUP)
        self.buf = bytearray()
        self.eof = False

    def fill(self, want: int, deadline: float, cap: int) -> str:
        """Read until ``want`` bytes are buffered (or EOF if want < 0).

        Returns "done", "eof", "cap" (more than ``cap`` bytes offered) or "deadline".
        """
        while want < 0 or len(self.buf) < want:
            if len(self.buf) > cap:
                return "cap"
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "deadline"
                self._poll.poll(min(left, 1.0) * 1000)
                continue
            if not chunk:
                self.eof = True
                return "eof"
            self.buf += chunk
        return "cap" if len(self.buf) > cap else "done"

    def read_frame(self, deadline: float, cap: int) -> tuple[str, bytes]:
        """One frame (kept-alive worker). Returns (state, frame bytes) like :meth:`fill`."""
        state = self.fill(HEADER.size, deadline, cap)
        if state != "done":
            return state, b""
        n_json, n_blob = HEADER.unpack_from(self.buf)
        total = HEADER.size + n_json + n_blob
        if total > cap:
            return "cap", b""
        state = self.fill(total, deadline, cap)
        if state != "done":
            return state, b""
        frame = bytes(self.buf[:total])
        del self.buf[:total]
        return "done", frame
