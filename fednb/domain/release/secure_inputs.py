"""What a domain feeds into a secure sum, kept out of every plain answer.

A request made with ``secure`` (a built-in's ``args["secure"]``, a training request's
``args["secure_aggregation"]``) releases only public facts in the clear (which fields, the noise's
scale); its numbers stay in the job's ``result_blob`` and leave the domain only masked, through
:mod:`fednb.domain.release.secure_aggregation`.

- ``count`` → [n]; ``sum`` → [n, sum] ([sum] when noisy: a noisy sum has no count); ``mean`` →
  [n, sum], the analyst dividing the sums (a noisy mean's sum is c·ñ + T̃, see :mod:`.noisy`).
- A training round → n·(w − g) for every tensor in name order, then n: the sum over domains is
  FedAvg's numerator and denominator (McMahan et al. 2017), and the differences keep the numbers
  small for the fixed-point ring.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fednb import tensors
from fednb.errors import InvalidInput

if TYPE_CHECKING:  # numpy loads where a vector is made: reviewing a request must not pay for it
    import numpy as np

SECURE_BUILTINS = ("count", "sum", "mean")
_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
          "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}


def check_builtin(name: str) -> None:
    if name not in SECURE_BUILTINS:
        raise InvalidInput(f"{name} cannot be securely aggregated; secure sums are available for "
                           f"{list(SECURE_BUILTINS)}")


def check_secure_only(policy, req) -> None:
    """A dataset the owner made ``secure_only`` releases its numbers only inside secure sums: a secure
    count, sum or mean, or training with secure aggregation; anything else is refused at submission."""
    if not policy.secure_aggregation.secure_only(req.dataset):
        return
    if req.kind == "builtin" and req.name in SECURE_BUILTINS and req.args.get("secure"):
        return
    if req.kind == "training" and req.args.get("secure_aggregation"):
        return
    raise InvalidInput(f"dataset {req.dataset!r} is secure-only on this domain (its policy): its numbers leave "
                       f"only inside a secure sum with at least {policy.secure_aggregation.min_peers} pinned peer "
                       f"domains; ask for {'/'.join(SECURE_BUILTINS)} with secure=True, or train with "
                       "secure_aggregation=True")


def from_builtin(name: str, result: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """(the public part, the secret vector as float64 bytes) of a built-in's result."""
    check_builtin(name)
    dp = result.get("dp")
    if name == "count":
        values = {"n": result["n"]}
    elif name == "sum":
        values = {"sum": result["sum"]} if dp else {"n": result["n"], "sum": result["sum"]}
    elif dp:  # noisy mean: the count and the sum c·ñ + T̃, from which the mean is their ratio
        values = {"n": result["n"], "sum": dp["center"] * result["n"] + result["t"]}
    else:
        values = {"n": result["n"], "sum": result["n"] * result["mean"]}
    import numpy as np

    public: dict[str, Any] = {"secure": True, "fields": list(values)}
    if dp:
        public["dp"] = dp
    return public, np.asarray(list(values.values()), dtype="<f8").tobytes()


def decode_weights(blob: bytes) -> dict[str, np.ndarray]:
    """Safetensors bytes → {name: float64 array}, without torch (the domain process never imports it)."""
    import numpy as np

    layout, _ = tensors.header(blob)
    (size,) = np.frombuffer(blob[:8], dtype="<u8")
    body = memoryview(blob)[8 + int(size):]
    out = {}
    for name, info in layout.items():
        if info["dtype"] not in _NUMPY:
            raise InvalidInput(f"tensor {name!r} has dtype {info['dtype']}, which secure aggregation cannot encode")
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(body[start:end], dtype=_NUMPY[info["dtype"]]).astype(np.float64)
    return out


def from_round(global_blob: bytes, local_blob: bytes, n: int) -> np.ndarray:
    """n·(w − g) over the tensors in name order, then n."""
    import numpy as np

    g, w = decode_weights(global_blob), decode_weights(local_blob)
    parts = [n * (w[name] - g[name]) for name in sorted(g)]
    return np.concatenate(parts + [np.array([float(n)])])


def job_vector(job) -> np.ndarray:
    """The secret vector of a finished job (a built-in's, or a training round's)."""
    import numpy as np

    if job["round"] is None:
        return np.frombuffer(bytes(job["result_blob"]), dtype="<f8").astype(np.float64)
    result = json.loads(job["result_json"])
    return from_round(bytes(job["input_blob"]), bytes(job["result_blob"]), int(result["n"]))
