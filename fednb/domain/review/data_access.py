"""What custom code may load from a dataset: the columns its request declares and the owner's row cap.

A function or training request may declare ``limits.columns``: the job's frame then holds only those
columns, read from the Parquet file column by column, so memory follows what the code uses and
the rest of the dataset never enters the job's process. The list is part of the hash the owner
approves (:func:`fednb.models.code_hash` covers ``limits``), so other columns are another request,
reviewed again. Names are checked here against the dataset's public schema, with one "did you mean".

The owner's ``max_rows_loaded`` (policy ``[sandbox]``) refuses custom code on a dataset larger than
the cap, before anything runs: a cap that silently kept the first rows would hand the analyst a
biased sample they did not ask for, and a refusal says what happened and what to do instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from fednb.domain.review.policy import Policy
from fednb.errors import InvalidInput
from fednb.locale import N_

CUSTOM_KINDS = ("function", "training")
MAX_NAME = 256


def check_columns(kind: str, columns: Sequence[str] | None, schema: Sequence[str]) -> None:
    """Refuse a declared column list that a custom job could not be given (raises InvalidInput)."""
    if columns is None:
        return
    if kind not in CUSTOM_KINDS:
        raise InvalidInput(N_("limits.columns applies to function and training requests; a built-in names its "
                             "columns in its arguments"))
    seen: set[str] = set()
    for name in columns:
        if len(name) > MAX_NAME or name not in schema:
            raise InvalidInput(_unknown(name[:MAX_NAME], schema))
        if name in seen:
            raise InvalidInput(N_("limits.columns names {column!r} twice; name each column once").format(column=name))
        seen.add(name)


def _unknown(name: str, schema: Sequence[str]) -> str:
    """The refusal of a column the schema lacks, with the closest public name when one is close."""
    close = difflib.get_close_matches(name, list(schema), n=1, cutoff=0.75)
    if close:
        return N_("limits.columns names {column!r}, which the dataset does not have (did you mean "
                  "{close!r}?)").format(column=name, close=close[0])
    return N_("limits.columns names {column!r}, which the dataset does not have; its columns are listed "
              "with the dataset").format(column=name)


def rows_over_cap(rows: int, policy: Policy) -> str | None:
    """Why custom code may not load a dataset of ``rows`` rows here, or None when it may."""
    cap = policy.sandbox.max_rows_loaded
    if cap and rows > cap:
        return N_("this dataset has more rows than this domain lets custom code load ({cap:,}, the owner's "
                  "max_rows_loaded); nothing ran. Built-in statistics run on any size, or ask the owner "
                  "for a smaller dataset").format(cap=cap)
    return None


def check_request(kind: str, columns: Sequence[str] | None, schema: Sequence[str], rows: int,
                  policy: Policy) -> None:
    """A submission's data access, checked before it is stored (raises InvalidInput)."""
    check_columns(kind, columns, schema)
    if kind in CUSTOM_KINDS:
        refused = rows_over_cap(rows, policy)
        if refused:
            raise InvalidInput(refused)
