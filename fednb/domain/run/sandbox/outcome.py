"""Turn what the zygote and the kernel reported, plus the bytes the job wrote, into a JobOutcome.

Status comes from the exit event (deadline kill, signal, exit code); the job's own bytes supply
only the value, the blob and the message. Those bytes are parsed as JSON, never unpickled.
"""

from __future__ import annotations

import signal

from fednb.codec import count_values
from fednb.domain.run.sandbox.frames import FrameError, unpack
from fednb.domain.run.sandbox.spec import EXIT_ORPHAN, EXIT_SETUP, STATUS_BY_EXIT, JobOutcome, JobSpec

MAX_MESSAGE = 2000
# When a failed job's own report is missing or unreadable (it may have closed or flooded fd 3).
_FAILED = {
    "error": "the job raised an exception; its report could not be read",
    "memory": "the job ran out of its memory budget ({lim.memory_mb} MB)",
    "output_too_large": "the result is larger than the output limit ({lim.max_output_bytes} bytes)",
}


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def from_exit(event: dict, spec: JobSpec, data: bytes, *, over_cap: bool, t_sent: float) -> JobOutcome:
    """The outcome of a one-shot job from its exit event and everything it wrote to the result pipe."""
    lim = spec.limits
    out = JobOutcome("killed", cpu_s=float(event.get("cpu_s") or 0), max_rss_mb=float(event.get("rss_mb") or 0))
    kind = event.get("event")
    if kind == "lost":
        out.message = "the sandbox server stopped while the job ran; it restarts with the next job"
        return out
    if kind == "rejected":
        out.message = f"the sandbox could not start the job: {event.get('message', '')}"[:MAX_MESSAGE]
        return out
    if over_cap:
        out.status = "output_too_large"
        out.message = f"the job wrote more than its output limit ({lim.max_output_bytes} bytes); it was stopped"
        return out
    if event.get("timed_out"):
        out.status = "timeout"
        out.message = f"the job ran longer than its wall-clock limit of {lim.wall_seconds:g} s and was stopped"
        return out
    sig = event.get("signal")
    if sig:
        return _from_signal(out, int(sig), spec)
    code = event.get("exitcode")
    if code == EXIT_SETUP or code == EXIT_ORPHAN:
        out.message = "the sandbox could not lock the job down; the code did not run"
        try:
            envelope, _ = unpack(data)
            out.message += f" ({str(envelope.get('message', ''))[:500]})"
        except FrameError:
            pass
        return out
    status = STATUS_BY_EXIT.get(code)
    if status is None:
        out.status = "error"
        out.message = f"the job exited with code {code} without a result"
        return out
    return fill(out, status, data, spec, t_sent)


def _from_signal(out: JobOutcome, sig: int, spec: JobSpec) -> JobOutcome:
    lim = spec.limits
    if sig in (signal.SIGKILL, signal.SIGXCPU) and out.cpu_s >= 0.9 * float(lim.cpu_seconds):
        out.status = "cpu_limit"
        out.message = f"the job used more than its CPU limit of {lim.cpu_seconds:g} s and was stopped"
    elif sig == signal.SIGKILL and out.max_rss_mb >= 0.9 * lim.memory_mb:
        out.status = "memory"
        out.message = f"the job used more than its memory limit of {lim.memory_mb} MB and was stopped"
    elif sig == signal.SIGSYS:
        out.message = "the job was stopped for a forbidden system call"
    else:
        out.message = f"the job was killed by {_signal_name(sig)}"
    return out


def fill(out: JobOutcome, status: str, data: bytes, spec: JobSpec, t_sent: float) -> JobOutcome:
    """Status decided: take value, blob, message and the probe counts from the job's frame."""
    try:
        envelope, blob = unpack(data)
    except FrameError as e:
        if status == "ok":
            out.status, out.message = "bad_output", f"the job's result could not be read: {e}"
        else:
            out.status, out.message = status, _FAILED.get(status, "the job failed").format(lim=spec.limits)
        return out
    out.status = status
    message = envelope.get("message")
    out.message = message[:MAX_MESSAGE] if isinstance(message, str) else ""
    t_call = envelope.get("t_call")
    if isinstance(t_call, (int, float)) and t_sent <= t_call:
        out.start_ms = (t_call - t_sent) * 1000
    if status != "ok":
        return out
    if "value" not in envelope:
        out.status, out.message = "bad_output", "the job's result has no value"
        return out
    try:
        out.probe = _probe(envelope, spec)
    except (RecursionError, TypeError, ValueError, KeyError, AttributeError):
        out.status, out.message = "bad_output", "the job's result is malformed"
        return out
    out.value, out.blob = envelope["value"], blob
    return out


def _probe(envelope: dict, spec: JobSpec) -> dict | None:
    """Value counts measured here, on the parsed values, not taken from the job's word."""
    values = count_values(envelope["value"])
    if not spec.probe_fraction or "probe_value" not in envelope:
        return None
    rows, probe_rows = envelope.get("rows"), envelope.get("probe_rows")
    if not (isinstance(rows, int) and isinstance(probe_rows, int)):
        raise ValueError("row counts missing")
    return {"values": values, "probe_values": count_values(envelope["probe_value"]), "rows": rows,
            "probe_rows": probe_rows}
