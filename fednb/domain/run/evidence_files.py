"""The row sets behind a built-in's result travel from its worker to the server in a file, not in the reply.

At fifty million rows a crosstab's cells are ~75 MB of Roaring bitmaps (~100 MB as base64): carried
in the worker's JSON reply, the server held them as text, again parsed, and again decoded. Instead
the worker writes each serialized bitmap, raw, to a file the server named in the job, inside the
domain folder's private ``.evidence`` folder (mode 0700, like the domain), and its reply carries
per set only the row count, the SHA-256, the offset and the size. The server reads one bitmap at a
time when the releasing transaction checks and remembers it (:mod:`fednb.domain.release.differencing`),
checks that its bytes have the announced SHA-256 and are a bitmap of the announced size, and removes
the file when the job is finished.

Files are named by the server process (its pid and start time) and the job, so a server that starts
removes those whose process is gone: a kill -9 of the server leaves nothing behind for long, and a
kill -9 of the worker leaves a file the server removes when it reports the job stopped. The file is
domain-internal: results reach the analyst as JSON only, and nothing in it is ever unpickled.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path
from typing import Any

from pyroaring import BitMap

FOLDER = ".evidence"
_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)\.bin$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class UnreadableEvidence(Exception):
    """The worker's file does not hold the row sets its reply announced (truncated, altered, malformed)."""


def _started(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (field 22 of ``/proc/PID/stat``), or
    None when there is no such process: with the pid it names one process, even after pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def path_for(domain_path: Path, job_id: int) -> Path:
    """Where this server process's worker writes the row sets of job ``job_id``."""
    folder = Path(domain_path) / FOLDER
    folder.mkdir(mode=0o700, exist_ok=True)
    pid = os.getpid()
    return folder / f"{pid}-{_started(pid) or 0}-{int(job_id)}.bin"


def remove(path: str | Path | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def sweep(domain_path: Path) -> int:
    """Remove the files of server processes that no longer run (a kill -9); returns how many."""
    folder = Path(domain_path) / FOLDER
    removed = 0
    for entry in folder.iterdir() if folder.is_dir() else ():
        match = _NAME.match(entry.name)
        if match is None or not _running(int(match[1]), int(match[2])):
            remove(entry)
            removed += 1
    return removed


def _running(pid: int, started: int) -> bool:
    """Whether the process that named a file still runs (started 0: a system without ``/proc``,
    where the pid alone is asked)."""
    if started:
        return _started(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- in the worker -----------------------------------------------------------------------------
def write(evidence: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """A copy of ``evidence`` whose records carry, instead of their bitmap (base64 ``bitmap`` or bytes
    ``blob``: :data:`fednb.domain.run.builtins.scan.RAW_BITMAPS`), its offset and size
    in the file at ``path``, written there one at a time. The built-in's own records are left as they
    are: a GLM keeps its rows' record for its next rounds."""
    def moved(record: dict[str, Any]) -> dict[str, Any]:
        blob = record["blob"] if "blob" in record else base64.b64decode(record["bitmap"])
        placed = {**{k: v for k, v in record.items() if k not in ("bitmap", "blob")},
                  "offset": out.tell(), "size": len(blob)}
        out.write(blob)
        return placed

    def is_record(value: Any) -> bool:
        return isinstance(value, dict) and ("bitmap" in value or "blob" in value)

    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        return {key: moved(value) if is_record(value) else
                [moved(v) if is_record(v) else v for v in value] if isinstance(value, list) else value
                for key, value in evidence.items()}


# -- in the server -----------------------------------------------------------------------------
class StoredBitmap:
    """One bitmap in a worker's file, read when the releasing transaction needs it."""

    def __init__(self, path: Path, record: dict[str, Any]):
        self.path, self.offset, self.size = path, record["offset"], record["size"]
        self.rows, self.sha256 = record["rows"], record["sha256"]

    def container_sizes(self) -> bytes | None:
        """The bitmap's container keys and sizes (:func:`fednb.domain.release.differencing.container_sizes`),
        read from its header alone: enough to pass over far-apart sets without reading the whole bitmap,
        which is checked whenever it is read."""
        from fednb.domain.release.differencing import container_sizes

        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                start = f.read(min(8, self.size))
                cookie = int.from_bytes(start[:4], "little")
                count = (cookie >> 16) + 1 if cookie & 0xFFFF == 12347 else int.from_bytes(start[4:8], "little")
                f.seek(self.offset)
                return container_sizes(f.read(min(self.size, 8 + (count + 7) // 8 + 4 * count)))
        except OSError as exc:
            raise UnreadableEvidence(f"the built-in worker's row sets could not be read ({type(exc).__name__})") \
                from None

    def read(self) -> bytes:
        """The serialized bitmap, after checking it is the one the worker announced."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                blob = f.read(self.size)
        except OSError as exc:
            raise UnreadableEvidence(f"the built-in worker's row sets could not be read ({type(exc).__name__})") from None
        if len(blob) != self.size:
            raise UnreadableEvidence("the built-in worker's row sets were cut short")
        if hashlib.sha256(blob).hexdigest() != self.sha256:
            raise UnreadableEvidence("the built-in worker's row sets do not have the SHA-256 it announced")
        try:
            rows = len(BitMap.deserialize(blob))
        except (ValueError, IndexError):
            raise UnreadableEvidence("the built-in worker's row sets are not Roaring bitmaps") from None
        if rows != self.rows:
            raise UnreadableEvidence("the built-in worker's row sets do not have the sizes it announced")
        return blob


def opened(evidence: Any, path: Path) -> dict[str, Any]:
    """The reply's evidence with each record's ``bitmap`` a :class:`StoredBitmap` of the file at ``path``.
    Checks the records' shape and that each lies inside the file (the bytes are checked when read)."""
    if not isinstance(evidence, dict):
        raise UnreadableEvidence("the built-in worker described its row sets wrongly")
    try:
        length = os.stat(path).st_size
    except OSError:
        length = None
    for value in evidence.values():
        for record in [value] if isinstance(value, dict) else value if isinstance(value, list) else []:
            numbers = [record.get(k) for k in ("rows", "offset", "size")] if isinstance(record, dict) else []
            if not numbers or "bitmap" in record or not all(type(n) is int and n >= 0 for n in numbers) \
                    or not _SHA256.match(str(record.get("sha256"))):
                raise UnreadableEvidence("the built-in worker described its row sets wrongly")
            if length is None or record["offset"] + record["size"] > length:
                raise UnreadableEvidence("the built-in worker's row sets were cut short")
            record["bitmap"] = StoredBitmap(path, record)
            del record["offset"], record["size"]
    return evidence
