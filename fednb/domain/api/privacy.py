"""HTTP routes for privacy: an analyst's remaining budget, and the four steps of secure aggregation.

Routes only; the budget is :mod:`fednb.domain.release.budget`, the protocol :mod:`fednb.domain.release.secure_aggregation`.
"""

import time
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query
from starlette.concurrency import run_in_threadpool

from fednb.domain.api.waiting import Notifier
from fednb.domain.domain import Domain
from fednb.domain.release.secure_aggregation import MAX_WAIT, SecureAggregation
from fednb.domain.store import jobs as job_rows
from fednb.errors import InvalidInput

STEPS = ("keys", "shares", "masked", "unmask")


async def _until_input_final(secure: SecureAggregation, notifier: Notifier, analyst: str, sid: str,
                             wait: float) -> None:
    """Wait, on the event loop and not in a held thread, until the session's job is final or
    ``wait`` is over: parked ``masked`` calls must not use up the threads other analysts need."""
    deadline = time.monotonic() + wait
    while True:
        change = notifier.next_change()
        if await run_in_threadpool(_input_final, secure, analyst, sid):
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        await notifier.wait(change, remaining)


def _input_final(secure: SecureAggregation, analyst: str, sid: str) -> bool:
    session = secure._get(analyst, sid)
    job = job_rows.of_round(secure.domain.store.connect(), session.request_id, session.round)
    return job is not None and job["status"] in ("done", "failed", "blocked")


def add_routes(app: FastAPI, domain: Domain, *, caller: Any, analyst: Any, responses: dict) -> None:
    """``caller`` and ``analyst`` are the app's authentication dependencies (``Annotated`` types)."""
    secure = SecureAggregation(domain)
    app.state.secure_aggregation = secure

    @app.get("/v1/datasets/{name}/budget", responses=responses, tags=["privacy"])
    async def get_budget(name: str, c: caller,
                         analyst_name: Annotated[str | None, Query(alias="analyst")] = None) -> dict:
        """Your privacy budget on this dataset: allowance, spent, remaining (epsilon and delta), plus the
        domain's privacy settings. The owner may ask about any analyst with ``?analyst=NAME``."""
        if c.role != "owner" or analyst_name is None:
            analyst_name = c.name
        b = await run_in_threadpool(domain.budget, analyst_name, name)
        p = domain.policy.privacy
        return {**b.as_dict(), "noisy": list(p.noisy), "query_epsilon": p.query_epsilon,
                "max_query_epsilon": p.max_query_epsilon, "training": p.training,
                "secure_min_domains": p.secure_min_domains,
                "secure_only": domain.policy.secure_aggregation.secure_only(name),
                "secure_min_peers": domain.policy.secure_aggregation.min_peers}

    @app.post("/v1/secagg/{session}/{step}", responses=responses, tags=["privacy"])
    async def secagg_step(session: str, step: str, c: analyst, body: Annotated[dict, Body()]) -> dict:
        """One step of secure aggregation (``keys``, ``shares``, ``masked``, ``unmask``; Bonawitz et al.
        2017). The analyst relays; this domain's keys never leave it; it releases only masked values."""
        if step not in STEPS:
            raise InvalidInput(f"unknown step {step!r}; the steps are {', '.join(STEPS)}")
        wait = body.get("wait", 0)
        if step == "masked" and isinstance(wait, (int, float)) and 0 < wait <= MAX_WAIT:
            await _until_input_final(secure, app.state.notifier, c.name, session, float(wait))
            body = {**body, "wait": 0}
        return await run_in_threadpool(getattr(secure, step), c.name, session, body)

    @app.post("/v1/secagg", responses=responses, tags=["privacy"])
    async def secagg_steps(c: analyst, body: Annotated[dict, Body()]) -> dict:
        """Several key-exchange steps (``keys`` or ``shares``) of several sessions in one call, in
        order: ``{"steps": [{"session": ID, "step": "keys", "body": {...}}, ...]}``. How a training
        run keys its coming rounds at once. Each step answers on its own, in ``results``:
        ``{"result": ...}``, or ``{"error": why, "status": the HTTP status it would have had}``."""
        return {"results": await run_in_threadpool(secure.batch, c.name, body.get("steps"))}
