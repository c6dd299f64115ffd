"""Routes about the domain itself: what it is (public) and who the caller is."""

from fastapi import APIRouter
from fastapi import Request as HttpRequest
from starlette.concurrency import run_in_threadpool

from fednb.domain.api.auth import AnyCaller, TheDomain
from fednb.domain.api.errors import RESPONSES
from fednb.models import DomainInfo, Session

router = APIRouter(tags=["domain"])


@router.get("/v1/info", response_model=DomainInfo)
async def get_info(request: HttpRequest) -> DomainInfo:
    """The domain's name, version and the sandbox isolation that holds on its machine. Public."""
    return request.app.state.info


@router.post("/v1/session", response_model=Session, responses=RESPONSES)
async def open_session(c: AnyCaller, domain: TheDomain) -> Session:
    """Who the token belongs to; recorded as a ``connect`` in the audit log."""
    await run_in_threadpool(domain.connect, c.actor)
    return Session(domain=domain.name, analyst=c.name, role=c.role)
