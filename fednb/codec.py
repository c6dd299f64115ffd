"""JSON encoding of analysis results: numbers, strings, lists, dicts, numpy and pandas objects.

Results cross the wire as JSON only (never pickle). numpy and pandas objects become tagged dicts
(``{"__fednb__": "dataframe", ...}``) that :func:`decode` turns back into the same objects.
:func:`count_values` counts the data values of an encoded result. ``fednb.table``/``fednb.stat``
results travel (inside the domain only) as tagged dicts with the rows behind each value; a domain
replaces them with the aggregate it computed and checked (:mod:`fednb.domain.release.output_check`).

This module imports numpy/pandas lazily so that the sandbox child and the analyst side can share it.
"""

from __future__ import annotations

import math
from typing import Any

TAG = "__fednb__"
MAX_DEPTH = 32


class EncodeError(TypeError):
    """A value that cannot be released as JSON."""


def _float(x: float) -> Any:
    if math.isfinite(x):
        return x
    return {TAG: "float", "value": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


def encode(obj: Any, _depth: int = 0) -> Any:
    """Turn ``obj`` into plain JSON types (dict, list, str, int, float, bool, None)."""
    if _depth > MAX_DEPTH:
        raise EncodeError(f"result is nested deeper than {MAX_DEPTH} levels")
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return _float(float(obj))
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and TAG not in obj:
            return {str(k): encode(v, _depth + 1) for k, v in obj.items()}
        return {TAG: "dict", "items": [[encode(k, _depth + 1), encode(v, _depth + 1)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [encode(v, _depth + 1) for v in obj]
    if type(obj).__module__ == "fednb.results":  # fednb.table / fednb.stat: rows for the domain to check
        shape = obj.encoded()
        return {TAG: shape[TAG], **{k: encode(v, _depth + 1) for k, v in shape.items() if k != TAG}}
    module = type(obj).__module__.split(".")[0]
    if module == "numpy":
        return _encode_numpy(obj, _depth)
    if module == "pandas":
        return _encode_pandas(obj, _depth)
    raise EncodeError(
        f"cannot release an object of type {type(obj).__name__}: return numbers, strings, lists, "
        "dicts, numpy arrays or pandas Series/DataFrames"
    )


def _encode_numpy(obj: Any, depth: int) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return encode(obj.item(), depth)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biufcUSOMm":
            raise EncodeError(f"cannot release a numpy array of dtype {obj.dtype}")
        return {TAG: "ndarray", "dtype": str(obj.dtype), "shape": list(obj.shape),
                "data": encode(obj.ravel().tolist(), depth + 1)}
    raise EncodeError(f"cannot release a numpy object of type {type(obj).__name__}")


def _labels(index: Any, depth: int) -> list:
    return [encode(_scalar(v), depth + 1) for v in index.tolist()]


def _scalar(v: Any) -> Any:
    """pandas scalars (Timestamp, NA, ...) as JSON-friendly values."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, tuple):
        return [_scalar(x) for x in v]
    name = type(v).__name__
    if name in ("NAType", "NaTType"):
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):
        return v.item()
    return str(v)


def _encode_pandas(obj: Any, depth: int) -> Any:
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return {TAG: "dataframe", "columns": _labels(obj.columns, depth),
                "index": _labels(obj.index, depth), "index_names": list(obj.index.names),
                "data": [[encode(_scalar(v), depth + 2) for v in row] for row in obj.itertuples(index=False, name=None)]}
    if isinstance(obj, pd.Series):
        return {TAG: "series", "name": encode(_scalar(obj.name), depth + 1), "index": _labels(obj.index, depth),
                "index_names": list(obj.index.names),
                "data": [encode(_scalar(v), depth + 2) for v in obj.tolist()]}
    if isinstance(obj, pd.Index):
        return encode(obj.tolist(), depth)
    return encode(_scalar(obj), depth)


def decode(obj: Any) -> Any:
    """Inverse of :func:`encode`: tagged dicts become numpy/pandas objects again."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    tag = obj.get(TAG)
    if tag is None:
        return {k: decode(v) for k, v in obj.items()}
    if tag == "float":
        return float(obj["value"])
    if tag in ("table", "stat"):  # only in dry runs: a domain releases the checked aggregate instead
        from fednb import results

        shape = {k: decode(v) for k, v in obj.items()}
        return results.unchecked_frame(shape) if tag == "table" else results.unchecked_stat(shape)
    if tag == "dict":
        return {_hashable(decode(k)): decode(v) for k, v in obj["items"]}
    if tag == "ndarray":
        import numpy as np

        return np.array(decode(obj["data"]), dtype=obj["dtype"]).reshape(obj["shape"])
    if tag in ("dataframe", "series"):
        import pandas as pd

        index = _index(obj["index"], obj.get("index_names"))
        if tag == "dataframe":
            return pd.DataFrame(decode(obj["data"]), columns=[_hashable(c) for c in obj["columns"]], index=index)
        return pd.Series(decode(obj["data"]), index=index, name=_hashable(obj["name"]), dtype=object).infer_objects()
    raise ValueError(f"unknown encoded type {tag!r}")


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


def _index(labels: list, names: list | None) -> Any:
    import pandas as pd

    labels = [_hashable(decode(v)) for v in labels]
    if names and len(names) > 1:
        return pd.MultiIndex.from_tuples(labels, names=names)
    return pd.Index(labels, name=names[0] if names else None)


def count_values(obj: Any) -> int:
    """Number of data values in an encoded result (labels and tags are not counted)."""
    if isinstance(obj, list):
        return sum(count_values(v) for v in obj)
    if isinstance(obj, dict):
        tag = obj.get(TAG)
        if tag is None:
            return sum(count_values(v) for v in obj.values())
        if tag == "float" or tag == "stat":
            return 1
        if tag == "table":
            return len(obj.get("groups") or ())
        if tag == "dict":
            return sum(count_values(v) for _, v in obj["items"])
        return count_values(obj["data"])
    return 1
