"""The analyst's building blocks: function sources, dry runs, the result codec, profiles, the demo."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import fednb
from fednb import codec
from fednb.client import profile as profiles
from fednb.errors import InvalidInput


@fednb.function
def by_sex(df, column="bmi"):
    """Mean of a column by sex."""
    return df.groupby("sex")[column].mean()


def test_function_sends_its_own_source_without_decorator():
    assert by_sex.source.startswith("def by_sex(df, column=\"bmi\"):")
    assert "@fednb.function" not in by_sex.source
    assert by_sex.name == "by_sex" and len(by_sex.hash()) == 64
    assert by_sex.hash({"column": "age"}) != by_sex.hash({"column": "bmi"})
    frame = pd.DataFrame({"sex": ["F", "M", "F"], "bmi": [20.0, 30.0, 22.0]})
    assert by_sex(frame)["F"] == 21.0  # still callable locally


def test_function_from_text_and_bad_sources():
    f = fednb.function("def g(df):\n    return len(df)\n")
    assert f.name == "g" and f(pd.DataFrame({"a": [1, 2]})) == 2
    with pytest.raises(InvalidInput, match="does not parse"):
        fednb.function("def g(df:\n")
    with pytest.raises(InvalidInput, match="no top-level function 'h'"):
        fednb.function("def g(df):\n    return 1\n", name="h")
    with pytest.raises(InvalidInput, match="not a plain function"):
        fednb.function(lambda df: 1)


def test_dry_run_goes_through_the_wire_encoding(fed):
    ds = fed.dataset("patients")
    out = fednb.dry_run(by_sex, ds, column="age")
    assert set(out) == {"hospital-a", "hospital-b"}
    assert isinstance(out["hospital-a"], pd.Series) and set(out["hospital-a"].index) <= {"F", "M"}

    @fednb.function
    def unreleasable(df):
        return object()

    with pytest.raises(codec.EncodeError, match="cannot release an object of type object"):
        fednb.dry_run(unreleasable, ds)


@pytest.mark.parametrize("value", [
    1, 2.5, "x", None, True, [1, [2, 3]], {"a": 1, "b": {"c": [1.5]}},
    {1: "int key", (2, 3): "tuple key"}, float("nan"), float("inf"),
    np.float32(1.5), np.int64(7), np.arange(6).reshape(2, 3), np.array([0.5, np.nan]),
    pd.Series([1.0, 2.0], index=["a", "b"], name="s"),
    pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}, index=["r1", "r2"]),
    pd.DataFrame({"m": [1.0, 2.0]}, index=pd.MultiIndex.from_tuples([("F", True), ("M", False)], names=["sex", "s"])),
])
def test_codec_round_trip(value):
    import json

    wire = json.loads(json.dumps(codec.encode(value), allow_nan=False))
    back = codec.decode(wire)
    if isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(back, value, check_dtype=False)
    elif isinstance(value, pd.Series):
        pd.testing.assert_series_equal(back, value, check_dtype=False)
    elif isinstance(value, np.ndarray):
        np.testing.assert_array_equal(back, value)
    elif isinstance(value, float) and np.isnan(value):
        assert np.isnan(back)
    else:
        assert back == value


def test_codec_refuses_what_cannot_be_json():
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    for bad in (Evil(), {1, 2}, b"bytes", np.array([object()], dtype=object)):
        with pytest.raises(codec.EncodeError):
            codec.encode(bad)
    deep: list = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(codec.EncodeError, match="nested deeper"):
        codec.encode(deep)
    assert codec.count_values({"a": [1, 2, 3], "b": codec.encode(np.zeros((4, 5)))}) == 23


def test_profiles_are_private_and_connect_by_name(hospitals, alice_token, tmp_path, monkeypatch):
    monkeypatch.setenv("FEDNB_HOME", str(tmp_path / "home"))
    for d in hospitals:
        result = subprocess.run([sys.executable, "-m", "fednb", "profile", "add", "course", d.url, "--token", alice_token],
                                capture_output=True, text=True, env={**os.environ})
        assert result.returncode == 0, result.stderr
    path = tmp_path / "home" / "profiles.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    listing = subprocess.run([sys.executable, "-m", "fednb", "profile", "list"], capture_output=True, text=True)
    assert "token set" in listing.stdout and alice_token not in listing.stdout
    fed = fednb.connect(profile="course")
    assert sorted(fed.domains) == ["hospital-a", "hospital-b"]
    fed.close()
    with pytest.raises(fednb.FednbError, match="no fednb profile 'nope'"):
        fednb.connect(profile="nope")
    profiles.remove("course", hospitals[0].url)
    assert len(profiles.load("course")) == 1


def test_fednb_demo_runs_end_to_end_and_leaves_nothing_behind(tmp_path):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "fednb", "demo", "--dir", str(tmp_path / "demo")],
                            capture_output=True, text=True, timeout=180)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "FAIL" not in result.stdout
    for step in ("Pooled statistics", "custom function", "denies", "blocked", "audit log"):
        assert step in result.stdout
    assert elapsed < 60, f"demo took {elapsed:.1f} s"
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "a domain server outlived the demo"


def test_import_fednb_is_light():
    code = "import sys, fednb; print(sorted(m for m in ('pandas', 'numpy', 'torch', 'httpx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
    assert out == "[]"
