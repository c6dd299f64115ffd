"""What an analyst learns when their code fails: the exception's type and the line, nothing it says.

Exception text is written by the analyst's code (``raise ValueError(df.to_csv())``), and the report
comes from the sandbox child, where that code runs, so every part of it is untrusted. By default the
domain keeps only what it can bound: the exception type, when it is a Python built-in or a common
library exception (a class of the analyst's own could be named after a patient), and the line
number, when it is a line of the submitted code. Each failure then tells the analyst at most a few
bits, and failed rounds count against the round budget (:mod:`fednb.domain.run.rounds`). The policy
setting ``disclosure.show_error_text`` shows the text itself, shortened.
"""

from __future__ import annotations

import builtins
import re

from fednb.locale import N_

CLIP = 300
_LIBRARY = {  # common exceptions of the libraries a function uses, by class name
    "EncodeError", "OperationalError", "ParserError", "ConnectError", "URLError", "gaierror", "timeout",
    "IndexingError", "MergeError", "InvalidIndexError", "ArrowInvalid", "ArrowTypeError", "LinAlgError",
    "AxisError", "UFuncTypeError", "SettingWithCopyError", "UnsupportedOperation", "JSONDecodeError",
    "PerfectSeparationError", "NotFound", "ResultShapeError",
}
KNOWN = {n for n in dir(builtins) if isinstance(getattr(builtins, n), type)
         and issubclass(getattr(builtins, n), BaseException)} | _LIBRARY
_TYPE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]{0,60})(?::|$| \()")
_LINE = re.compile(r"\(line (\d{1,7}) of your function\)\s*$")
_ENCODE = re.compile(r"cannot release an? (object|numpy object|numpy array) of (?:type|dtype) ([A-Za-z0-9_.]{1,40})")


def reduce(message: str | None, code: str | None, *, show_text: bool) -> str:
    """The error an analyst reads: ``KeyError (line 3 of your function)`` or, if allowed, the text."""
    message = (message or "").strip()
    if show_text:
        return message if len(message) <= CLIP else message[:CLIP] + "..."
    found = _TYPE.match(message)
    kind = found.group(1) if found and found.group(1) in KNOWN else None
    text = kind or N_("an exception of a type of its own")
    if kind == "EncodeError":
        text = N_("{error}: {reason}").format(error=text, reason=_encode_reason(message))
    line = _LINE.search(message)
    lines = (code or "").count("\n") + 1
    if line and 1 <= int(line.group(1)) <= lines:
        text = N_("{error} (line {line} of your function)").format(error=text, line=int(line.group(1)))
    return text


def _encode_reason(message: str) -> str:
    """The codec's own refusals, with a type name only when it is one of Python's, numpy's or pandas'."""
    if "nested deeper" in message:
        return N_("the result is nested deeper than the codec allows")
    found = _ENCODE.search(message)
    if found:
        name = found.group(2)
        shown = name if name in dir(builtins) else N_("of your own")
        return N_("cannot release an object of type {shown}: return numbers, text, lists, dicts, numpy arrays, "
                 "pandas objects, fednb.table or fednb.stat").format(shown=shown)
    return N_("the result cannot be encoded as JSON")
