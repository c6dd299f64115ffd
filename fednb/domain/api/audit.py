"""Routes for the owner's audit log: its entries and the check of its hash chain."""

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from fednb.domain.api.auth import Owner, TheDomain
from fednb.domain.api.errors import RESPONSES
from fednb.models import AuditEntry

router = APIRouter(tags=["audit"], responses=RESPONSES)


@router.get("/v1/audit", response_model=list[AuditEntry])
async def get_audit(c: Owner, domain: TheDomain, since: Annotated[int, Query(ge=0, le=2**62)] = 0,
                    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[AuditEntry]:
    return await run_in_threadpool(domain.audit_entries, since=since, limit=limit)


@router.get("/v1/audit/verify")
async def verify_audit(c: Owner, domain: TheDomain) -> dict:
    v = await run_in_threadpool(domain.verify_audit)
    return {"ok": v.ok, "entries": v.entries, "head": v.head, "problems": v.problems}
