"""One cgroup for all of a domain's jobs: a memory and CPU cap across every job running at once.

Per-job rlimits bound one job; ``workers`` jobs (and kept-alive training workers) at once can
still take the host's memory and every core. The kernel's cgroup v2 controllers bound them
together: ``memory.max`` (past it the kernel reclaims, then its OOM killer stops a process of
the group, never one outside it) and ``cpu.max`` (a CPU-time quota per period). See the kernel's
Documentation/admin-guide/cgroup-v2.rst ("Memory", "CPU", "Delegation").

The group is made below the domain process's own cgroup, as v2 delegation requires (a delegated
service may write only inside its subtree). Jobs join it themselves, before they load data, by
writing "0" to a ``cgroup.procs`` descriptor the domain opened; the zygote stays outside, so an
out-of-memory kill picks a job, never the fork server.

Degrades, never fails: with no cgroup v2 hierarchy (a cgroup v1 host), with the memory or cpu
controller on v1 (a hybrid host), or without write access (no delegation), jobs run as before,
capped one by one, and the isolation report says why the shared cap is not in force.
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from dataclasses import dataclass

CONTROLLERS = ("memory", "cpu")
CPU_PERIOD_US = 100_000


@dataclass
class JobsCgroup:
    """``path``: where jobs are placed (None: nowhere); ``limits``: memory.max and cpu.max written."""

    path: str | None
    limits: bool
    note: str
    memory_mb: int = 0
    cpus: float = 0.0

    def open_procs(self) -> int | None:
        """A write descriptor on ``cgroup.procs`` for the zygote to hand to each job (None: no group)."""
        if self.path is None:
            return None
        return os.open(os.path.join(self.path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)

    def oom_kills(self) -> int:
        """How many processes the kernel killed for the shared memory cap so far."""
        return _counter(self.path, "memory.events", "oom_kill")

    def cpu_used_us(self) -> int:
        """CPU time charged to the group: > 0 once a job ran inside it (the kernel's word, not ours)."""
        return _counter(self.path, "cpu.stat", "usage_usec")

    def close(self) -> None:
        """Remove the group (empty once the zygote and its jobs are gone; retried while they exit)."""
        if self.path is None:
            return
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY:
                    return
                time.sleep(0.02)


def _counter(path: str | None, name: str, key: str) -> int:
    if path is None:
        return 0
    try:
        with open(os.path.join(path, name)) as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k == key:
                    return int(v)
    except (OSError, ValueError):
        pass
    return 0


def locate(mountinfo: str = "/proc/self/mountinfo", cgroup: str = "/proc/self/cgroup") -> str | None:
    """This process's cgroup v2 directory, or None when no v2 hierarchy is mounted."""
    try:
        with open(mountinfo) as f:
            mounts = [line.split() for line in f]
        with open(cgroup) as f:
            own = next((line.strip()[3:] for line in f if line.startswith("0::")), None)
    except OSError:
        return None
    # fields: id parent major:minor root mount-point options ... - fstype source options
    roots = [(m[3], m[4]) for m in mounts if "-" in m and m[m.index("-") + 1] == "cgroup2"]
    if own is None or not roots:
        return None
    root, mount_point = roots[0]
    rel = os.path.relpath(own, root) if own.startswith(root) else own.lstrip("/")
    return os.path.normpath(os.path.join(mount_point, rel))


def _read(path: str) -> list[str]:
    with open(path) as f:
        return f.read().split()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _enable_controllers(base: str) -> None:
    """Let children of ``base`` use memory and cpu. v2 forbids that while ``base`` itself holds
    processes (unless it is the root): when the only one is this domain, it moves into a leaf."""
    if set(CONTROLLERS) <= set(_read(os.path.join(base, "cgroup.subtree_control"))):
        return
    wanted = " ".join(f"+{c}" for c in CONTROLLERS)
    try:
        _write(os.path.join(base, "cgroup.subtree_control"), wanted)
        return
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise
    procs = _read(os.path.join(base, "cgroup.procs"))
    if procs != [str(os.getpid())]:
        raise OSError(errno.EBUSY, f"{base} holds other processes ({len(procs)}); give the domain a "
                                   "delegated cgroup of its own (systemd: Delegate=yes)")
    leaf = os.path.join(base, "fednb-domain")
    os.makedirs(leaf, exist_ok=True)
    _write(os.path.join(leaf, "cgroup.procs"), str(os.getpid()))
    _write(os.path.join(base, "cgroup.subtree_control"), wanted)


def create(memory_mb: int, cpus: float, base: str | None = None) -> JobsCgroup:
    """The shared group with its limits, or a JobsCgroup(path=None) whose note says why not."""
    base = base or locate()
    off = "not in force, jobs are capped one by one (rlimits)"
    if base is None:
        return JobsCgroup(None, False, f"shared job cgroup {off}: no cgroup v2 hierarchy (a cgroup v1 host)")
    try:
        available = _read(os.path.join(base, "cgroup.controllers"))
    except OSError as e:
        return JobsCgroup(None, False, f"shared job cgroup {off}: cannot read {base} ({e.strerror})")
    missing = [c for c in CONTROLLERS if c not in available]
    if missing:
        return JobsCgroup(None, False, f"shared job cgroup {off}: cgroup v2 at {base} offers no "
                                       f"{' or '.join(missing)} controller (on cgroup v1 here, or not delegated)")
    path = os.path.join(base, f"fednb-jobs-{os.getpid()}-{secrets.token_hex(3)}")
    try:
        _enable_controllers(base)
        os.mkdir(path)
    except OSError as e:
        return JobsCgroup(None, False, f"shared job cgroup {off}: cannot create it under {base} "
                                       f"({e.strerror or e}; no delegation?)")
    try:
        _write(os.path.join(path, "memory.max"), str(int(memory_mb) * 2**20))
        if os.path.exists(os.path.join(path, "memory.swap.max")):
            _write(os.path.join(path, "memory.swap.max"), "0")  # the cap is on memory, not memory + swap
        _write(os.path.join(path, "cpu.max"), f"{max(int(cpus * CPU_PERIOD_US), 1000)} {CPU_PERIOD_US}")
    except OSError as e:
        JobsCgroup(path, False, "").close()
        return JobsCgroup(None, False, f"shared job cgroup {off}: cannot set its limits ({e.strerror or e})")
    return JobsCgroup(path, True, f"shared job cgroup {path}: all jobs together at most {memory_mb} MiB "
                                  f"and {cpus:g} CPUs", memory_mb, cpus)
