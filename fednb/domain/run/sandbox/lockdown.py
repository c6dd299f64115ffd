"""Per-job process hygiene and privilege drops that need neither landlock nor seccomp.

Everything here runs in the forked job child, before any analyst code.
"""

from __future__ import annotations

import ctypes
import fcntl
import math
import os
import resource
import signal

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 1, 4, 38, 36
PR_GET_SECCOMP = 21
_SYS_CAPSET = 126
_CAP_V3 = 0x20080522


def prctl(option: int, arg: int = 0) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def die_with_parent(expected_ppid: int) -> None:
    """SIGKILL this process when its parent dies; fail if the parent is already gone."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != expected_ppid:  # the parent died before PDEATHSIG was armed
        os._exit(70)


def reset_signals() -> None:
    """Default dispositions (the zygote's handlers must not run in the job), nothing blocked."""
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP) or signal.getsignal(sig) is signal.SIG_DFL:
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass
    # Over-size writes fail with EFBIG (an exception the analyst sees) instead of a silent kill.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def keep_only_fds(fds: list[int]) -> None:
    """Move ``fds`` to 3, 4, ... and close every other descriptor above 2."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 512) for fd in fds]  # out of the way first
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i, inheritable=False)
    os.closerange(3 + len(fds), 1 << 20)


def scrub_environment(home: str) -> None:
    """A fresh environment: nothing inherited, HOME/TMPDIR in the job's temp dir."""
    os.environ.clear()
    os.environ.update({"HOME": home, "TMPDIR": home, "PATH": "/nonexistent", "LANG": "C.UTF-8",
                       "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


def redirect_stdio(path: str, uid: int | None) -> None:
    """stdin from /dev/null; stdout/stderr to a file in the temp dir (discarded: it may hold rows)."""
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    if uid is not None:
        os.fchown(out, uid, uid)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)


def vm_size_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def set_rlimits(limits: dict, vm_size: int, nproc: int | None) -> None:
    """Hard limits (soft = hard, so the job cannot raise them back)."""
    used_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    cpu = math.ceil(used_cpu + float(limits["cpu_seconds"]))
    settings = [
        (resource.RLIMIT_CPU, cpu),  # soft = hard: SIGKILL at the limit
        (resource.RLIMIT_AS, vm_size + int(limits["memory_mb"]) * 2**20),
        (resource.RLIMIT_FSIZE, int(limits["max_file_mb"]) * 2**20),
        (resource.RLIMIT_NOFILE, int(limits["max_open_files"])),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_MEMLOCK, 0),
        (resource.RLIMIT_MSGQUEUE, 0),
        (resource.RLIMIT_RTPRIO, 0),
    ]
    if nproc is not None:  # counts per real uid; useful with a per-job uid only
        settings.append((resource.RLIMIT_NPROC, nproc))
    for res, value in settings:
        resource.setrlimit(res, (value, value))


def drop_uid(uid: int) -> None:
    """Become ``uid``/``uid`` with no supplementary groups (this also drops every capability)."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid):
        raise OSError("the uid drop did not hold")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Keep the uid but hold no capability (the fallback when a per-job uid cannot import Python)."""
    header = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    if _libc.syscall(_SYS_CAPSET, ctypes.byref(header), ctypes.byref(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def no_new_privs_and_not_dumpable() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_DUMPABLE, 0)  # no ptrace/proc access to this process by its own uid


def seccomp_mode() -> int:
    return _libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0)


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))
