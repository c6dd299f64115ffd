"""Running one job from the domain: spec in a memfd, result from a capped pipe, status from the zygote."""

from __future__ import annotations

import json
import os
import signal
import time

from fednb.domain.run.sandbox import outcome
from fednb.domain.run.sandbox.frames import Reader
from fednb.domain.run.sandbox.link import ZygoteLink
from fednb.domain.run.sandbox.spec import JobOutcome, JobSpec

BACKSTOP_S = 5.0  # past the wall limit, the domain stops trusting the zygote and kills it
SLACK_BYTES = 256 * 1024  # envelope, message and row counts on top of the value


def spec_memfd(spec: JobSpec) -> int:
    """The spec in an anonymous file: code never passes through the zygote's memory."""
    fd = os.memfd_create("fednb-job", os.MFD_CLOEXEC)
    data = json.dumps(spec.to_json()).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def oom_kills(link: ZygoteLink) -> int:
    """The shared job cgroup's out-of-memory kills so far (0 without one)."""
    cgroup = getattr(link, "cgroup", None)
    return cgroup.oom_kills() if cgroup is not None else 0


def shared_cap(out: JobOutcome, event: dict, link: ZygoteLink, ooms_before: int) -> JobOutcome:
    """A SIGKILL while the shared cgroup counted a new out-of-memory kill: say so, in the analyst's words."""
    cgroup = getattr(link, "cgroup", None)
    if cgroup is None or event.get("signal") != signal.SIGKILL or event.get("timed_out") \
            or out.status not in ("killed", "memory") or cgroup.oom_kills() <= ooms_before:
        return out
    out.status = "memory"
    out.message = (f"the domain's jobs together used more than their shared memory cap of {cgroup.memory_mb} MiB; "
                   "the kernel stopped this job (retry when fewer jobs run, or ask the owner to raise "
                   "jobs_memory_mb)")
    return out


def output_cap(spec: JobSpec) -> int:
    return spec.limits.max_output_bytes * (2 if spec.probe_fraction else 1) + SLACK_BYTES


def run(link: ZygoteLink, spec: JobSpec) -> JobOutcome:
    memfd = spec_memfd(spec)
    ooms = oom_kills(link)
    r, w = os.pipe2(os.O_CLOEXEC)
    t_sent = time.monotonic()
    try:
        jid, waiter = link.dispatch({"op": "job", "limits": spec.limits.to_json(),
                                   "deadline_s": spec.limits.wall_seconds, "session": False}, [memfd, w])
    finally:
        os.close(memfd)
        os.close(w)  # the child holds the only write end now: EOF means it is gone
    backstop = t_sent + spec.limits.wall_seconds + BACKSTOP_S
    reader = Reader(r)
    try:
        state = reader.fill(-1, backstop, output_cap(spec))
        if state == "cap":
            link.kill(jid)
        event = waiter.wait(max(0.0, backstop - time.monotonic()) + 0.5)
    finally:
        os.close(r)
    if event is None:  # the zygote did not stop the job: stop the zygote
        link.abort()
        out = JobOutcome("timeout", message=f"the job ran longer than its wall-clock limit of "
                                            f"{spec.limits.wall_seconds:g} s and was stopped")
    else:
        out = outcome.from_exit(event, spec, bytes(reader.buf), over_cap=state == "cap", t_sent=t_sent)
        shared_cap(out, event, link, ooms)
    out.wall_ms = (time.monotonic() - t_sent) * 1000
    return out
