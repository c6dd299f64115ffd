"""Namespaces and mounts, set up once by the zygote (never per job).

The zygote's mount namespace hides the domain folder under a tmpfs and binds the datasets folder
back read-only; directories the job uid could not traverse (``/root`` at 0700 holding a pyenv
interpreter) are replaced by a tmpfs that exposes only the interpreter. Job temp dirs are
size-capped tmpfs mounts under ``/tmp``, itself a fresh tmpfs.

Pathname UNIX sockets are reachable from any network namespace (they live in the filesystem), so
the view also hides where services listen: ``/run`` and ``/var/run`` (D-Bus, systemd, docker.sock,
nscd) under empty tmpfs mounts, and every other socket the host had bound when the zygote started
(``/dev/log``, sockets listed in ``/proc/net/unix``) under ``/dev/null``. Seccomp is the first wall
(a job cannot create a socket that could connect); this one stands behind it.
"""

from __future__ import annotations

import ctypes
import os
import stat
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
JOBS_ROOT = "/tmp"
SOCKET_DIRS = ("/run", "/var/run")  # where services put their sockets (FHS)
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
    """Mount /dev/null over each socket still visible: connect() then finds no listener."""
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
    notes.append(f"/run and /var/run hidden; {hidden} other host socket(s) covered")


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


def setup_filesystem(domain_dir: str, datasets_dir: str, keep: list[str], sockets: list[str] = ()) -> list[str]:
    """Build the zygote's view of the filesystem (in its own mount namespace; needs a fresh pid ns).

    ``keep`` are what Python needs (prefixes, sys.path, the fednb package); ``sockets`` are the
    host's pathname sockets to cover. Returns notes for the isolation report.
    """
    notes = []
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates back to the host
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this pid namespace's /proc
    keep = _minimal([p for p in keep if os.path.exists(p)])
    masks = {domain_dir, JOBS_ROOT} | {os.path.realpath(d) for d in SOCKET_DIRS if os.path.isdir(d)}
    for p in keep:
        hidden = untraversable_ancestor(p)
        if hidden:
            masks.add(hidden)
            notes.append(f"{hidden} is not traversable by other users: masked by a tmpfs exposing only {p}")
    binds = [(p, True) for p in keep if any(_under(p, m) for m in masks)]
    binds.append((datasets_dir, True))
    # Hold the originals before tmpfs mounts hide them; bind from the fds afterwards.
    held = [(os.open(p, os.O_PATH | os.O_CLOEXEC), p, ro) for p, ro in binds]
    try:
        for m in sorted(masks, key=_depth):
            os.makedirs(m, exist_ok=True)  # may be a mount point inside a mask mounted just before
            mode, size = ("0711", "16m") if m == JOBS_ROOT else ("0755", "1m")
            mount("tmpfs", m, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode={mode},size={size},nr_inodes=16384")
        for fd, p, ro in sorted(held, key=lambda h: _depth(h[1])):
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.makedirs(p, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(p), exist_ok=True)
                open(p, "a").close()
            mount(f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
            if ro:
                mount(None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    finally:
        for fd, _, _ in held:
            os.close(fd)
    _hide_sockets(list(sockets) + list(SOCKET_FILES), notes)
    notes.append(f"domain folder {domain_dir} hidden; datasets bound read-only; job temp dirs on tmpfs")
    return notes


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
