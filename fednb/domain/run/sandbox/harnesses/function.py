"""The "function" harness: call ``entry(df, **args, **inputs)`` and release its JSON-encoded result.

``df`` keeps the dataset's row positions as its index: ``fednb.table``/``fednb.stat`` values hand
them back so the domain can count and verify the rows behind each value itself. ``fednb`` is in
the function's namespace, as ``np`` and ``pd`` are. With ``probe_fraction`` set, the function also
runs on a fixed random sample of the rows.
"""

from __future__ import annotations

import time

from fednb.codec import EncodeError, encode
from fednb.domain.run.sandbox.harness import CODE_NAME, Harness, Reply, describe, failure, register
from fednb.domain.run.sandbox.harness_data import load_dataset


@register
class FunctionHarness(Harness):
    name = "function"

    def prepare(self) -> None:
        import pandas as pd

        self.df = load_dataset(self.spec["data_path"], self.spec["data_format"], self.spec.get("columns"))
        self.df.index = pd.RangeIndex(len(self.df))  # row positions, set in place (reset_index copies every column)
        self.fn = None

    def start(self) -> Reply | None:
        import numpy as np
        import pandas as pd

        import fednb

        ns = {"__name__": "analysis", "__builtins__": __builtins__, "np": np, "pd": pd, "fednb": fednb}
        try:
            exec(compile(self.spec["code"], CODE_NAME, "exec"), ns)
        except BaseException as e:  # analyst code: anything may be raised
            return failure(e)
        fn = ns.get(self.spec["entry"])
        if not callable(fn):
            return Reply("error", message=f"NameError: your code defines no function named {self.spec['entry']!r}")
        self.fn = fn
        return None

    def call(self, inputs: dict | None, blob: bytes | None) -> Reply:
        kwargs = {**(self.spec.get("args") or {}), **(inputs or {})}
        frac = self.spec.get("probe_fraction")
        try:
            # Sample before the full call: the function may modify the frame it is given.
            probe_df = self.df.sample(frac=frac, random_state=0).copy() if frac else None
        except MemoryError as e:
            return failure(e)
        fields: dict = {"rows": len(self.df)}
        try:
            if self.t_call is None:
                self.t_call = time.monotonic()
            fields["value"] = encode(self.fn(self.df, **kwargs))
            if probe_df is not None:
                fields["probe_value"] = encode(self.fn(probe_df, **kwargs))
                fields["probe_rows"] = len(probe_df)
        except EncodeError as e:
            return Reply("error", message=describe(e))
        except BaseException as e:  # analyst code: anything may be raised
            return failure(e)
        fields["t_call"] = self.t_call
        return Reply("ok", fields)
