"""A hand-written seccomp BPF filter (x86_64), installed through ctypes.

Two policies in one program. The socket API is an **allow-list**: a job may create sockets only
with ``socketpair(AF_UNIX, SOCK_STREAM)`` (asyncio's self-pipe, ``multiprocessing.Pipe``,
libraries talking to themselves); ``socket``, ``connect``, ``bind``, ``listen``, ``accept`` and
``sendto`` with an address are denied whatever their family. A pair is born connected to itself,
so there is nothing it can reach: a stream peer cannot be re-targeted (``connect`` is denied, and
the kernel refuses an address on send with EISCONN). Datagram and seqpacket pairs are refused:
``sendmsg`` on a datagram socket may name any pathname socket (``/dev/log``), and the address
sits in user memory, out of the filter's reach. An allow-list, because the deny-list it replaces ("every family but AF_UNIX") let a job connect to any pathname UNIX socket
on the host (Landlock does not mediate ``connect`` on them): D-Bus, syslog, ``docker.sock``.
Families, types and calls added by future kernels are denied without a change here.

Everything else is allow by default, deny what lets a job leave its process: new processes
(threads stay allowed), exec, signals to other processes, ptrace and cross-process memory,
namespaces and mounts, rlimit changes, SysV IPC, io_uring (its operations bypass seccomp), bpf,
perf, userfaultfd, keys, modules, clocks, credentials, mount listing. A whole-syscall allow-list
would break with each release of numpy, pyarrow and torch (and their lazy imports) for little gain
once these are out; but a deny list must not grow silently with the kernel, so every syscall
number past the last one reviewed here (``FIRST_UNREVIEWED``, after Linux 6.17's file_setattr)
answers ENOSYS, as on an older kernel. clone3 answers ENOSYS too, so that glibc falls back to
clone, whose flags the filter can read.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_SYS_SECCOMP = 317
_SET_MODE_FILTER, _FLAG_TSYNC = 1, 1

_RET_KILL_PROCESS, _RET_ALLOW, _RET_ERRNO = 0x80000000, 0x7FFF0000, 0x00050000
_LD_ABS_W, _AND_K, _JEQ, _JGE, _JSET, _RET = 0x20, 0x54, 0x15, 0x35, 0x45, 0x06
_OFF_NR, _OFF_ARCH = 0, 4


def _arg_lo(i: int) -> int:
    return 16 + 8 * i  # little endian: the low 32 bits come first


def _arg_hi(i: int) -> int:
    return 16 + 8 * i + 4


# x86_64 numbers. Denied with EPERM.
DENIED = {
    "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "ptrace": 101,
    "process_vm_readv": 310, "process_vm_writev": 311, "process_madvise": 440, "process_mrelease": 448,
    "kcmp": 312, "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438, "tkill": 200,
    "mount": 165, "umount2": 166, "unshare": 272, "setns": 308, "chroot": 161, "pivot_root": 155,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "setsid": 112, "setpgid": 109, "setrlimit": 160,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "bpf": 321,
    "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249,
    "personality": 135, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "kexec_load": 246, "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168,
    "acct": 163, "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159,
    "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173, "quotactl": 179,
    "quotactl_fd": 443, "open_by_handle_at": 304, "name_to_handle_at": 303, "fanotify_init": 300,
    "mknod": 133, "mknodat": 259, "move_pages": 279, "migrate_pages": 256, "ioprio_set": 251,
    "setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114, "setresuid": 117,
    "setresgid": 119, "setgroups": 116, "setfsuid": 122, "setfsgid": 123, "capset": 126,
    "syslog": 103, "uselib": 134, "vhangup": 153, "lookup_dcookie": 212,
    "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64, "semop": 65, "semctl": 66,
    "semtimedop": 220, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71,
    "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243, "mq_notify": 244,
    "mq_getsetattr": 245,
    "statmount": 457, "listmount": 458, "lsm_set_self_attr": 460, "open_tree_attr": 467,
    # the socket API beyond socketpair: nothing a job may name or reach
    "socket": 41, "connect": 42, "accept": 43, "bind": 49, "listen": 50, "accept4": 288,
}
_CLONE, _CLONE3, _SOCKETPAIR, _SENDTO, _KILL, _TGKILL = 56, 435, 53, 44, 62, 234
_RT_SIGQUEUEINFO, _RT_TGSIGQUEUEINFO, _PRLIMIT64 = 129, 297, 302
_CLONE_THREAD = 0x00010000
FIRST_UNREVIEWED = 470  # x86_64 numbers up to 469 (file_setattr, Linux 6.17) were reviewed for this filter
_AF_UNIX = 1
_SOCK_TYPE_MASK, _SOCK_STREAM = 0xF, 1  # the type without NONBLOCK/CLOEXEC


def supported() -> bool:
    """The filter is written for x86_64 only."""
    return platform.machine() == "x86_64"


def _assemble(program: list[tuple]) -> bytes:
    """Resolve labels: an instruction is (code, jt, jf, k) or a label string marking the next one."""
    labels, ins = {}, []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(ins)
        else:
            ins.append(item)
    out = []
    for i, (code, jt, jf, k) in enumerate(ins):
        jt, jf = (0 if t is None else labels[t] - i - 1 for t in (jt, jf))
        if not (0 <= jt <= 255 and 0 <= jf <= 255):  # BPF jumps forward only, 8-bit offsets
            raise ValueError(f"BPF jump out of range at instruction {i}")
        out.append(struct.pack("<HBBI", code, jt, jf, k & 0xFFFFFFFF))
    return b"".join(out)


_PID_PLACEHOLDER = 0x7EADBEEF
_PID_K = struct.pack("<I", _PID_PLACEHOLDER)


def build(own_pid: int) -> bytes:
    """The filter program for a job whose pid (in its pid namespace) is ``own_pid``."""
    program = bytearray(_template())
    at = [i + 4 for i in range(0, len(program), 8) if program[i + 4:i + 8] == _PID_K]
    if len(at) != 1:
        raise AssertionError("the filter must compare against the job's pid exactly once")
    program[at[0]:at[0] + 4] = struct.pack("<I", own_pid)
    return bytes(program)


@functools.lru_cache(maxsize=1)
def _template() -> bytes:
    """Assembled once in the zygote; jobs only patch their pid in."""
    own_pid = _PID_PLACEHOLDER
    p: list = [
        (_LD_ABS_W, None, None, _OFF_ARCH),
        (_JEQ, "arch_ok", None, AUDIT_ARCH_X86_64),  # i386 (int 0x80) and others: kill
        (_RET, None, None, _RET_KILL_PROCESS),
        "arch_ok", (_LD_ABS_W, None, None, _OFF_NR),
        (_JGE, None, "nr_ok", _X32_BIT),  # x32 numbers alias the 64-bit ones: kill
        (_RET, None, None, _RET_KILL_PROCESS),
        "nr_ok", (_JGE, "enosys", None, FIRST_UNREVIEWED),  # newer than this filter: as if absent
    ]
    p += [(_JEQ, "eperm", None, nr) for nr in sorted(set(DENIED.values()))]
    p += [(_JEQ, "enosys", None, _CLONE3)]
    for nr, label in ((_CLONE, "clone"), (_SOCKETPAIR, "socketpair"), (_SENDTO, "sendto"),
                      (_KILL, "self0"), (_TGKILL, "self0"),
                      (_RT_SIGQUEUEINFO, "self0"), (_RT_TGSIGQUEUEINFO, "self0"), (_PRLIMIT64, "prlimit")):
        p.append((_JEQ, label, None, nr))
    p += [
        (_RET, None, None, _RET_ALLOW),  # not in the list: allowed
        # clone: only threads (CLONE_THREAD) may be created.
        "clone", (_LD_ABS_W, None, None, _arg_lo(0)), (_JSET, "allow", "eperm", _CLONE_THREAD),
        # socketpair: AF_UNIX stream only. The kernel reads domain and type as ints: compare the low
        # 32 bits only.
        "socketpair", (_LD_ABS_W, None, None, _arg_lo(0)), (_JEQ, "socketpair_type", "eperm", _AF_UNIX),
        "socketpair_type", (_LD_ABS_W, None, None, _arg_lo(1)), (_AND_K, None, None, _SOCK_TYPE_MASK),
        (_JEQ, "allow", "eperm", _SOCK_STREAM),
        # sendto: no destination address (a pointer: both halves must be 0).
        "sendto", (_LD_ABS_W, None, None, _arg_lo(4)), (_JEQ, "sendto_hi", "eperm", 0),
        "sendto_hi", (_LD_ABS_W, None, None, _arg_hi(4)), (_JEQ, "allow", "eperm", 0),
        # kill/tgkill/rt_*sigqueueinfo: the first argument (an int pid) must be the job itself.
        "self0", (_LD_ABS_W, None, None, _arg_lo(0)), (_JEQ, "allow", "eperm", own_pid),
        # prlimit64: reading is fine, setting (new_limit != NULL) is not.
        "prlimit", (_LD_ABS_W, None, None, _arg_lo(2)), (_JEQ, "prlimit_hi", "eperm", 0),
        "prlimit_hi", (_LD_ABS_W, None, None, _arg_hi(2)), (_JEQ, "allow", "eperm", 0),
        "allow", (_RET, None, None, _RET_ALLOW),
        "eperm", (_RET, None, None, _RET_ERRNO | errno.EPERM),
        "enosys", (_RET, None, None, _RET_ERRNO | errno.ENOSYS),
    ]
    return _assemble(p)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(own_pid: int) -> None:
    """Install the filter on every thread of the process (TSYNC). Needs no_new_privs."""
    if not supported():
        raise OSError(f"the seccomp filter is written for x86_64, not {platform.machine()}")
    program = build(own_pid)
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    r = _libc.syscall(_SYS_SECCOMP, ctypes.c_uint(_SET_MODE_FILTER), ctypes.c_uint(_FLAG_TSYNC), ctypes.byref(prog))
    if r != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}" if r < 0 else f"seccomp: thread {r} could not sync")
