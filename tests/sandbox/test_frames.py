"""The domain's parser of job output: one frame, JSON only, finite numbers, bounded depth."""

from __future__ import annotations

import json
import struct

import pandas as pd
import pytest

from fednb.codec import EncodeError, encode
from fednb.domain.run.sandbox.frames import FrameError, pack, unpack


def raw(body: bytes, blob: bytes = b"") -> bytes:
    return struct.pack("!II", len(body), len(blob)) + body + blob


def test_round_trip_with_blob():
    assert unpack(pack({"value": [1, 2.5, "x"]}, b"\x00\x01")) == ({"value": [1, 2.5, "x"]}, b"\x00\x01")
    assert unpack(pack({"value": None})) == ({"value": None}, None)


@pytest.mark.parametrize("data", [
    b"", b"\x00\x00", raw(b'{"value": 1}') + b"trailing", raw(b'{"value": 1}')[:-1], raw(b"{not json"),
    raw(b"[1, 2]"), raw(b'{"value": NaN}'), raw(b'{"value": -Infinity}'), raw(b'{"value": 1e999}'),
    raw(b'{"value": ' + b"[" * 100000 + b"]" * 100000 + b"}"),
    raw(b'{"value": ' + b"[" * 200 + b"]" * 200 + b"}"),
])
def test_malformed_frames_are_rejected(data):
    with pytest.raises(FrameError):
        unpack(data)


def test_the_deepest_codec_output_is_accepted():
    value = pd.DataFrame({"a": [1]}, index=pd.MultiIndex.from_tuples([(1, 2)]))
    while True:  # non-string keys: tagged dicts, the codec's deepest form
        try:
            encode({(1, 2): value})
        except EncodeError:
            break
        value = {(1, 2): value}
    envelope = {"value": encode(value), "probe_value": encode(value)}
    assert unpack(raw(json.dumps(envelope).encode()))[0] == envelope
