"""The job child: forked from the zygote, locks itself down, then runs its harness.

Order matters (see SANDBOX_RECIPE.md): read the spec → own session, die with the zygote → clean
signals and fds (after joining the domain's shared job cgroup) → load the dataset (trusted, privileged) → temp dir, environment, stdio →
rlimits → uid drop (or capabilities) → no_new_privs, not dumpable → landlock → seccomp → analyst
code. Any failure before analyst code exits with EXIT_SETUP: the code never runs with fewer walls
than configured. The child always leaves through ``os._exit``.
"""

from __future__ import annotations

import json
import os
import time

from fednb.domain.run.sandbox import frames, landlock, lockdown, seccomp
from fednb.domain.run.sandbox.harness import Harness, Reply, get
from fednb.domain.run.sandbox.spec import EXIT_BY_STATUS, EXIT_SETUP

RESULT_FD, INPUT_FD = 3, 4


def main(ctx: dict) -> None:
    """Never returns. ``ctx`` comes from the zygote: fds, temp dir, uid, layers, paths."""
    try:
        harness, layers = _lock_down(ctx)
    except BaseException as e:  # nothing may unwind into the zygote's loop
        if _fds_arranged:  # before that, fd 3 may still be one of the zygote's descriptors
            try:
                _write(Reply("setup", message=f"sandbox setup failed: {type(e).__name__}: {e}"), {})
            except BaseException:
                pass
        os._exit(EXIT_SETUP)
    try:
        code = _serve(harness, ctx, layers) if ctx["session"] else _once(harness, ctx, layers)
    except BaseException:  # after analyst code ran (it may have closed fd 3): its own failure
        code = EXIT_BY_STATUS["error"]
    os._exit(code)


_fds_arranged = False


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _lock_down(ctx: dict) -> tuple[Harness, dict]:
    spec = json.loads(_read_all(ctx["spec_fd"]))
    os.close(ctx["spec_fd"])
    os.setsid()  # own group: the zygote kills the whole group
    lockdown.die_with_parent(ctx["zygote_pid"])
    lockdown.reset_signals()
    joined = _join_cgroup(ctx.get("cgroup_fd"))  # before the data is loaded: its memory counts there
    lockdown.keep_only_fds([ctx["result_fd"]] + ([ctx["input_fd"]] if ctx["session"] else []))
    global _fds_arranged
    _fds_arranged = True
    if joined:
        raise OSError(f"could not join the domain's shared job cgroup: {joined}")

    harness = get(spec["harness"])(spec)
    harness.prepare()  # trusted code, still privileged: reads the dataset

    tmp, uid = ctx["tmp"], ctx["uid"]
    os.chdir(tmp)
    lockdown.scrub_environment(tmp)
    lockdown.redirect_stdio(os.path.join(tmp, "output.log"), uid)
    if lockdown.thread_count() != 1:  # landlock would not cover the others
        raise RuntimeError("the job has background threads before lockdown")
    lockdown.set_rlimits(spec["limits"], lockdown.vm_size_bytes(), ctx["nproc"] if uid is not None else None)
    if uid is not None:
        lockdown.drop_uid(uid)
    else:
        lockdown.drop_capabilities()
    lockdown.die_with_parent(ctx["zygote_pid"])  # a credential change clears PDEATHSIG
    lockdown.no_new_privs_and_not_dumpable()
    threads = lockdown.thread_count()  # /proc is out of reach once landlock holds
    abi = ctx["landlock_abi"]
    if abi:
        landlock.restrict(ctx["read_only"], [tmp, "/dev/null"], abi)
    if ctx["seccomp"]:
        seccomp.install(os.getpid())
    layers = {"uid": os.getuid(), "uid_drop": uid is not None, "landlock_abi": abi,
              "seccomp": lockdown.seccomp_mode() == 2, "threads": threads}
    return harness, layers


def _join_cgroup(fd: int | None) -> str:
    """Move this process into the shared job cgroup; "" when done or not configured. The descriptor
    is closed with the others right after: a job holding it could move other processes in."""
    if fd is None:
        return ""
    try:
        os.write(fd, b"0")  # "0": the writing process itself
        return ""
    except OSError as e:
        return e.strerror or str(e)


def _write(reply: Reply, layers: dict) -> None:
    envelope = {"status": reply.status, "message": reply.message, "layers": layers, **reply.fields}
    data = frames.pack(envelope, reply.blob)
    view = memoryview(data)
    while view:
        view = view[os.write(RESULT_FD, view):]


def _checked(reply: Reply, limit: int) -> Reply:
    """Refuse to send a value larger than the job's output limit (the domain caps it too)."""
    if reply.status != "ok":
        return reply
    size = len(json.dumps(reply.fields, allow_nan=False)) + len(reply.blob or b"")
    if size > limit:
        return Reply("output_too_large", message=f"the result is {size} bytes; the limit is {limit} bytes")
    return reply


def _once(harness: Harness, ctx: dict, layers: dict) -> int:
    limit = int(harness.spec["limits"]["max_output_bytes"]) * (2 if harness.spec.get("probe_fraction") else 1)
    try:
        reply = harness.start() or harness.call(harness.spec.get("inputs"), None)
        reply = _checked(reply, limit)
        _write(reply, layers)
    except MemoryError:
        return EXIT_BY_STATUS["memory"]
    return EXIT_BY_STATUS.get(reply.status, EXIT_SETUP)


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _serve(harness: Harness, ctx: dict, layers: dict) -> int:
    """A kept-alive worker: one input frame in, one result frame out, until the input closes."""
    limit = int(harness.spec["limits"]["max_output_bytes"]) * (2 if harness.spec.get("probe_fraction") else 1)
    started = harness.start()
    while True:
        header = _read_exact(INPUT_FD, frames.HEADER.size)
        if header is None:
            return 0
        n_json, n_blob = frames.HEADER.unpack(header)
        body = _read_exact(INPUT_FD, n_json + n_blob)
        if body is None:
            return 0
        envelope, blob = frames.unpack(header + body)  # written by the domain
        t0 = time.monotonic()
        try:
            reply = started or harness.call(envelope.get("inputs"), blob)
            reply = _checked(reply, limit)
        except MemoryError:
            reply = Reply("memory", message="MemoryError: the job ran out of its memory budget")
        reply.fields.setdefault("t_call", t0)
        _write(reply, layers)
