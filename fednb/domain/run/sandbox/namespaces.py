"""Namespaces and mounts, set up once by the zygote (never per job).

The zygote's mount namespace is a new root holding only what jobs need, bound read-only at the
same paths: the interpreter and its packages, system libraries, the datasets folder; plus
``/dev/null``, ``/dev/zero``, ``/dev/urandom``, a fresh ``/proc`` and ``/tmp``, where job temp
dirs are size-capped tmpfs mounts. Parent folders are plain directories of the new root, so a
pyenv interpreter under ``/root`` (0700 on the host) is reachable by a per-job uid.

Pathname UNIX sockets are reachable from any network namespace (they live in the filesystem):
D-Bus, syslog, systemd, docker.sock. In the new root none of them exists, nor does a socket a
host service binds later; the few that lie inside a bound folder are covered by ``/dev/null``.
Seccomp is the first wall (a job cannot create a socket that could connect); this one stands
behind it, and behind Landlock for files.
"""

from __future__ import annotations

import ctypes
import os
import stat
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long
_SYS_PIVOT_ROOT = 155  # x86_64; no glibc wrapper

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
JOBS_ROOT = "/tmp"
SOCKET_FILES = ("/dev/log",)  # syslog, when it is a socket of its own and not a link into /run
MAX_HIDDEN_SOCKETS = 4096


def _check(r: int, what: str) -> None:
    if r != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: None if s is None else s.encode())
    _check(_libc.mount(enc(source), target.encode(), enc(fstype), flags, enc(data)), f"mount {target}")


def umount(target: str) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


def enter() -> dict:
    """Unshare net, mount, pid, ipc and uts namespaces for the zygote (as root, or in a user ns).

    Returns what held: {"netns", "mountns", "pidns", "userns", "error"}. The caller must fork once
    afterwards: the new pid namespace applies to children only.
    """
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    userns = os.geteuid() != 0
    uid, gid = os.geteuid(), os.getegid()
    sockets = pathname_sockets()  # the host's list: the new network namespace shows only its own
    try:
        unshare(flags | (CLONE_NEWUSER if userns else 0))
    except OSError as e:
        return {"netns": False, "mountns": False, "pidns": False, "userns": False, "error": str(e)}
    if userns:  # map only ourselves: no uid drop is possible inside
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    return {"netns": True, "mountns": True, "pidns": True, "userns": userns, "error": "", "sockets": sockets}


def pathname_sockets(table: str = "/proc/net/unix") -> list[str]:
    """Absolute paths of the UNIX sockets bound in this network namespace (abstract ones start
    with "@" and live in the namespace, not the filesystem: the zygote's own netns parts them)."""
    try:
        with open(table) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return []
    found = {line.split(None, 7)[7] for line in lines if len(line.split(None, 7)) == 8}
    return sorted(p for p in found if p.startswith("/"))


def _hide_sockets(candidates: list[str], notes: list[str]) -> None:
    """Mount /dev/null over each socket still visible (inside a bound folder): connect() then finds no
    listener."""
    hidden = 0
    for path in sorted(set(candidates)):
        if hidden >= MAX_HIDDEN_SOCKETS:
            notes.append(f"more than {MAX_HIDDEN_SOCKETS} host sockets: the rest are walled by seccomp only")
            break
        try:
            real = os.path.realpath(path)
            if not stat.S_ISSOCK(os.lstat(real).st_mode):
                continue
            mount("/dev/null", real, None, MS_BIND)
        except OSError:
            continue  # gone, or on a path we cannot mount over: seccomp still denies connect()
        hidden += 1
    if hidden:
        notes.append(f"{hidden} host socket(s) inside bound folders covered")


def _depth(p: str) -> int:
    return len(Path(p).parts)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def untraversable_ancestor(path: str) -> str | None:
    """The topmost directory above ``path`` that other users cannot enter, if any."""
    parts = Path(path).parts
    for i in range(2, len(parts)):
        d = str(Path(*parts[:i]))
        if not os.stat(d).st_mode & stat.S_IXOTH:
            return d
    return None


def world_readable(path: str) -> bool:
    """Whether a job running as another uid can open ``path`` (every ancestor traversable)."""
    if untraversable_ancestor(path) is not None:
        return False
    mode = os.stat(path).st_mode
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return mode & need == need


def _minimal(paths: list[str]) -> list[str]:
    """Drop paths that lie under another path of the list."""
    out: list[str] = []
    for p in sorted(set(paths), key=_depth):
        if not any(_under(p, q) for q in out):
            out.append(p)
    return out


def setup_filesystem(domain_dir: str, datasets_dir: str, keep: list[str], sockets: list[str] = (),
                     system: list[str] = ()) -> list[str]:
    """Build the zygote's filesystem: a new, minimal root (in its own mount namespace; needs a fresh pid ns).

    Only ``keep`` (what Python needs: prefixes, sys.path, the fednb package) and ``system`` (shared
    libraries, zoneinfo) are bound in, read-only, at their own paths, with the datasets folder,
    ``/dev/null``, ``/dev/zero``, ``/dev/urandom``, a fresh ``/proc`` and a size-capped ``/tmp``.
    Nothing else of the host exists for a job: not the domain folder, not ``/etc``, ``/home``,
    ``/run``, ``/var``, nor any UNIX socket outside the bound folders, including sockets bound after
    the zygote started. ``sockets`` (the host's at start) inside bound folders are covered too.
    Returns notes for the isolation report.
    """
    notes = []
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates back to the host
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this pid namespace's /proc
    devices = [d for d in ("/dev/null", "/dev/zero", "/dev/urandom") if os.path.exists(d)]
    binds = _minimal([p for p in list(keep) + list(system) if os.path.exists(p) and p not in devices])
    # Hold the originals: the new root is staged on JOBS_ROOT, which may hide some of them.
    held = [(os.open(p, os.O_PATH | os.O_CLOEXEC), p) for p in binds + [datasets_dir] + devices]
    root = JOBS_ROOT
    try:
        mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=8m,nr_inodes=16384")
        # /tmp first: folders bound below come after it (a venv or a domain under /tmp stays visible)
        os.makedirs(root + JOBS_ROOT, exist_ok=True)
        mount("tmpfs", root + JOBS_ROOT, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=0711,size=16m,nr_inodes=16384")
        by_path = {p: fd for fd, p in held}
        for p in sorted(binds, key=_depth):
            _bind(by_path[p], root + p, read_only=True)
        if os.path.lexists(root + domain_dir):  # the domain folder lies inside a bound folder: hide it
            mount("tmpfs", root + domain_dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=1m")
        _bind(by_path[datasets_dir], root + datasets_dir, read_only=True)
        for d in devices:
            _bind(by_path[d], root + d, read_only=False)
        os.makedirs(root + "/proc", exist_ok=True)
        mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    finally:
        for fd, _ in held:
            os.close(fd)
    os.chdir(root)
    _check(_libc.syscall(_SYS_PIVOT_ROOT, b".", b"."), "pivot_root")  # the old root now lies under the new
    umount(".")  # ... and is gone
    os.chdir("/")
    _hide_sockets(list(sockets) + list(SOCKET_FILES), notes)
    notes.append(f"jobs see a new root: {len(binds)} read-only folders of Python and system libraries, "
                 f"the datasets read-only, no domain folder, /run, /etc or host sockets; job temp dirs on tmpfs")
    return notes


def _bind(fd: int, target: str, read_only: bool) -> None:
    if os.path.isdir(f"/proc/self/fd/{fd}"):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
    if read_only:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def mount_job_tmp(path: str, uid: int, size_mb: int) -> None:
    """A size-capped tmpfs owned by the job uid: one job cannot fill another's disk."""
    os.mkdir(path, 0o700)
    mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
          f"mode=0700,uid={uid},gid={uid},size={max(int(size_mb), 1)}m,nr_inodes=20000")


def unmount_job_tmp(path: str) -> None:
    try:
        umount(path)  # lazy: never busy; the job's processes are gone anyway
    except OSError:
        pass  # not mounted (the mount itself failed)
    os.rmdir(path)
