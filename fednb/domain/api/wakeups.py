"""``GET /v1/wakeups`` (owner only): how often this server's waiting parts woke up, and which helper
processes run now.

An idle domain should sleep: no loop re-reads the store or ticks on a timer. These counters let the
owner (and the tests) see that: read them twice a while apart with nothing happening, and nothing
has moved. Counts only, no request or analyst data.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi import Request as HttpRequest

from fednb.domain.api.auth import Owner

router = APIRouter()


async def _counters(request: HttpRequest) -> dict[str, Any]:
    read = getattr(request.app.state, "wakeups", None)
    return read() if read is not None else {}


@router.get("/v1/wakeups", tags=["owner"])
async def wakeups(c: Owner, counters: Annotated[dict, Depends(_counters)]) -> dict[str, Any]:
    """``process``: the server process that answers (one of ``--workers N``); ``runner``: times an
    idle job lane woke; ``long_polls``: times a waiting request re-read the store; ``outside_writes``:
    commits by other processes (the CLI, the other ``--workers``) that woke the server; ``server``:
    wake-ups of the HTTP server's main loop; ``sandbox_starts`` and ``sandbox_running``: the sandbox's
    fork server, started on demand; ``builtin_workers_running``: warm built-in workers."""
    return counters
