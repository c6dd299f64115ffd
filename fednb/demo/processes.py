"""The processes a local domain server runs (its built-in workers, its sandbox's zygote and their
children), read from Linux's ``/proc``: how tests and benchmarks find what a served domain started,
to check it is the kind they expect or that it ended with the server."""

from __future__ import annotations

from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), nearest first; empty where
    ``/proc`` is missing. A process that ends while the table is read is left out."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit():
            try:  # the command may hold ")", so the fields are read after the last one
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found: list[int] = []
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found.extend(sorted(frontier))
    return found


def command_line(pid: int) -> list[str]:
    """The arguments process ``pid`` was started with (empty once it has ended)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
