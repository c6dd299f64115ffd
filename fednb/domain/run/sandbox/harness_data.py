"""Loading a job's dataset: trusted code in the job's process, before lockdown (see child.py).

The frame is built without leaving threads behind: the job must be single-threaded when landlock is
applied, and ``pd.read_parquet`` starts Arrow's thread pools. Parquet is read column chunk by column
chunk from the open file (no pre-buffering, one thread), so memory follows the columns read.

When the request declared its columns, the file is read by a short-lived process forked for that
alone, which leaves only those columns in a memfd as an Arrow IPC stream (Apache Arrow columnar
format, "IPC streaming format") and exits; the job maps the stream and builds its frame. Reading
Parquet in the job's own process would leave pieces of the other columns in its memory: the footer,
with each column chunk's min/max statistics, and whatever a read-ahead brought in (a small file is
read whole). Analyst code can read its own
process's memory (``ctypes``), so the only way the other columns never reach it is never to have
been there. The reader is gone before any analyst code runs, and its memory with it; the cost is
one fork and one copy of the declared columns per job (``benchmarks/custom_columns.py``).
"""

from __future__ import annotations

import os

MAX_ERROR = 2000


def load_dataset(path: str, fmt: str, columns: list[str] | None = None):
    """The dataset as pandas; only ``columns``, in their order, when given (None: all)."""
    import pandas as pd

    if fmt == "csv":  # tests and benchmarks; a domain keeps its datasets as Parquet
        return pd.read_csv(path, usecols=columns)[columns] if columns is not None else pd.read_csv(path)
    if fmt == "parquet":
        if columns is not None:
            return _read_in_another_process(path, columns)
        return _read_parquet(path).to_pandas(use_threads=False)  # copies: the frame must be writable
    if fmt == "none":  # the self-test: no dataset
        return pd.DataFrame()
    raise ValueError(f"unknown data format {fmt!r}")


def _read_parquet(path: str, columns: list[str] | None = None):
    import pyarrow.parquet as pq

    with open(path, "rb") as f:
        parquet = pq.ParquetFile(f, pre_buffer=False)
        if columns is not None:
            missing = [c for c in columns if c not in parquet.schema_arrow.names]
            if missing:  # pyarrow would leave them out without a word
                raise KeyError(f"the dataset has no column {missing[0]!r}")
        return parquet.read(columns=columns, use_threads=False)


def _read_in_another_process(path: str, columns: list[str]):
    """``columns`` of the Parquet file at ``path`` as pandas, read by a forked reader that leaves
    them in a memfd as an Arrow IPC stream (written whole, then mapped here: no pipe ping-pong)."""
    import mmap

    import pyarrow as pa

    fd = os.memfd_create("fednb-columns", os.MFD_CLOEXEC)
    try:
        pid = os.fork()
        if pid == 0:
            _reader(fd, path, columns)  # never returns
        _, status = os.waitpid(pid, 0)
        size = os.fstat(fd).st_size
        if os.waitstatus_to_exitcode(status) != 0 or size == 0:
            raise OSError(f"the dataset reader ended with status {os.waitstatus_to_exitcode(status)}")
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
            if mapped[:1] != b"T":
                raise OSError(mapped[1:MAX_ERROR].decode(errors="replace") or "the dataset reader failed")
            stream = pa.ipc.open_stream(pa.py_buffer(mapped)[1:], options=pa.ipc.IpcReadOptions(use_threads=False))
            frame = stream.read_all().to_pandas(use_threads=False)  # a copy: the mapping goes below
            del stream
        return frame
    finally:
        os.close(fd)


def _reader(fd: int, path: str, columns: list[str]) -> None:
    """The forked reader: "T" + the declared columns as an IPC stream, or "E" + what went wrong."""
    code = 1
    try:
        import pyarrow as pa

        from fednb.domain.run.sandbox.lockdown import PR_SET_PDEATHSIG, prctl

        prctl(PR_SET_PDEATHSIG, 9)  # SIGKILL: never outlive the job
        with open(fd, "wb", closefd=False) as sink:
            try:
                table = _read_parquet(path, columns)
            except Exception as exc:  # a missing column, an unreadable file: said, not raised
                sink.write(b"E" + f"{type(exc).__name__}: {exc}".encode()[:MAX_ERROR])
            else:
                sink.write(b"T")
                with pa.ipc.new_stream(sink, table.schema) as writer:
                    writer.write_table(table)
        code = 0
    finally:
        os._exit(code)
