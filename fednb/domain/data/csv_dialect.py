"""How a CSV file is written: its encoding, field separator and decimal mark, found before reading it.

Owners bring CSV files from wherever they keep data, and Excel writes them in the machine's regional
settings: a Spanish Excel saves "CSV (delimitado por comas)" in Windows-1252, separated by ``;``,
with decimal commas (``70,5``). Read as UTF-8 with ``,`` that file fails, or worse, loads as one
text column. We detect, in this order, and say what we found:

- **encoding**: a byte-order mark (UTF-8, UTF-16); else UTF-8 if the whole file decodes as UTF-8
  (text in another 8-bit encoding almost never does: RFC 3629 §1 and the WHATWG Encoding standard's
  reasoning); else Windows-1252 (what Excel writes for Western European languages; a superset of
  ISO-8859-1's printable characters), else ISO-8859-1, which decodes any byte.
- **separator**: :class:`csv.Sniffer` over the first lines, kept only if it splits every sampled
  line into the same number (> 1) of fields; else the candidate (``,`` ``;`` tab ``|``) that does.
- **decimal mark**: a comma only when the separator is not a comma and the numbers say so without
  doubt: some fields read ``70,5`` and none reads ``70.5`` (``1.234,5`` counts as a comma with
  ``.`` grouping thousands). Anything mixed keeps ``.`` and says the mark was unclear.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from fednb.errors import InvalidInput

CANDIDATES = ",;\t|"
SAMPLE_BYTES = 64 * 1024
SAMPLE_LINES = 50
_COMMA_DECIMAL = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d+),\d+$")
_POINT_DECIMAL = re.compile(r"^[+-]?\d*\.\d+$")
_POINT_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+$")
_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 (with BOM)", "utf-16": "UTF-16", "cp1252": "Windows-1252",
          "latin-1": "ISO-8859-1 (Latin-1)"}
SAVE_AS = ("save it from your spreadsheet as \"CSV UTF-8 (comma delimited)\", or as Parquet, "
           "and register that file")


@dataclass(frozen=True)
class Dialect:
    """What :func:`detect` found; ``notes`` say what was unclear."""

    encoding: str
    delimiter: str
    decimal: str = "."
    thousands: str | None = None
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        sep = {"\t": "tab", ",": "','", ";": "';'", "|": "'|'"}.get(self.delimiter, repr(self.delimiter))
        parts = [_NAMES.get(self.encoding, self.encoding), f"{sep}-separated",
                 "decimal comma" if self.decimal == "," else "decimal point"]
        if self.thousands:
            parts.append(f"'{self.thousands}' between thousands")
        return ", ".join(parts) + "".join(f"; {n}" for n in self.notes)

    def pandas_options(self) -> dict:
        return {"encoding": self.encoding, "sep": self.delimiter, "decimal": self.decimal,
                "thousands": self.thousands}


def detect_encoding(path: Path) -> str:
    """The file's encoding: a BOM's, else UTF-8 if all of it decodes, else Windows-1252 or Latin-1."""
    with path.open("rb") as f:
        head = f.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        for encoding in ("utf-8", "cp1252"):
            f.seek(0)
            decoder = codecs.getincrementaldecoder(encoding)()
            try:
                while chunk := f.read(1 << 20):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
                return encoding
            except UnicodeDecodeError:
                continue
    return "latin-1"


def _sample_lines(path: Path, encoding: str) -> list[str]:
    with path.open("r", encoding=encoding, newline="") as f:
        text = f.read(SAMPLE_BYTES)
    lines = text.splitlines()
    if len(text) == SAMPLE_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut mid-way
    return [line for line in lines if line.strip()][:SAMPLE_LINES]


def _widths(lines: list[str], delimiter: str) -> set[int]:
    return {len(row) for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)}


def detect_delimiter(lines: list[str]) -> str | None:
    """The separator that splits every line into the same number (> 1) of fields, or None."""
    if not lines:
        return None
    try:
        sniffed = csv.Sniffer().sniff("\n".join(lines), delimiters=CANDIDATES).delimiter
    except csv.Error:
        sniffed = None
    if sniffed is not None and len(widths := _widths(lines, sniffed)) == 1 and widths.pop() > 1:
        return sniffed
    consistent = [(next(iter(w)), d) for d in CANDIDATES if len(w := _widths(lines, d)) == 1 and next(iter(w)) > 1]
    return max(consistent)[1] if consistent else None


def detect_decimal(lines: list[str], delimiter: str) -> tuple[str, str | None, tuple[str, ...]]:
    """(decimal mark, thousands separator or None, notes) from the sampled fields."""
    if delimiter == ",":
        return ".", None, ()
    fields = [f.strip() for row in csv.reader(io.StringIO("\n".join(lines[1:])), delimiter=delimiter) for f in row]
    comma = [f for f in fields if _COMMA_DECIMAL.match(f)]
    dotted = [f for f in fields if _POINT_DECIMAL.match(f) or _POINT_THOUSANDS.match(f)]
    grouped = any("." in f for f in comma)  # 1.234,5: the dots group thousands
    if comma and not dotted:
        return ",", "." if grouped else None, ()
    if comma and grouped and all(_POINT_THOUSANDS.match(f) for f in dotted):
        return ",", ".", ()
    if comma:
        return ".", None, (f"decimal mark unclear ({dotted[0]!r} and {comma[0]!r}): numbers written with a comma "
                           "stay text",)
    return ".", None, ()


def detect(path: Path) -> Dialect:
    """The dialect of the CSV file at ``path``; :class:`InvalidInput` with a hint when it has none."""
    encoding = detect_encoding(path)
    lines = _sample_lines(path, encoding)
    if not lines:
        raise InvalidInput(f"{path} is empty")
    if "\x00" in "".join(lines):
        raise InvalidInput(f"{path} does not look like a text (CSV) file; {SAVE_AS}")
    delimiter = detect_delimiter(lines)
    if delimiter is None:
        if len(lines) > 1 and _widths(lines, ",") == {1} and not any(c in lines[0] for c in CANDIDATES[1:]):
            return Dialect(encoding, ",", notes=("one column",))
        counts = {d: sorted(_widths(lines, d)) for d in CANDIDATES if any(d in line for line in lines)}
        seen = "; ".join(f"{Dialect(encoding, d).describe().split(', ')[1]}: {w[0]} to {w[-1]} fields per line"
                         for d, w in counts.items()) or "no separator at all"
        raise InvalidInput(f"cannot tell how the columns of {path} are separated: the first lines do not all "
                           f"have the same number of fields with any of , ; tab | ({seen}); {SAVE_AS}")
    decimal, thousands, notes = detect_decimal(lines, delimiter)
    return Dialect(encoding, delimiter, decimal, thousands, notes)
