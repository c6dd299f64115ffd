"""Who is calling: the bearer token, checked against the domain's hashed tokens, with failed tokens
rate-limited per client address. FastAPI runs these (synchronous) dependencies in a thread."""

import logging
from typing import Annotated, Any

from fastapi import Depends, Security
from fastapi import Request as HttpRequest
from fastapi.security import HTTPBearer

from fednb.domain.api.errors import ApiError
from fednb.domain.domain import Domain
from fednb.locale import N_

log = logging.getLogger("fednb.domain.api.app")

# Documents the token in the OpenAPI schema; `caller` reads the header itself for its own messages.
BEARER = HTTPBearer(auto_error=False, description="A token from the domain's owner (`fednb domain invite`).")


class Caller:
    def __init__(self, name: str, role: str):
        self.name, self.role = name, role

    @property
    def actor(self) -> str:
        return f"owner:{self.name}" if self.role == "owner" else self.name

    @property
    def scope(self) -> str | None:
        """Whose requests the caller may see: an analyst's own, or (owner) everyone's."""
        return None if self.role == "owner" else self.name


async def the_domain(request: HttpRequest) -> Domain:
    return request.app.state.domain


def caller(request: HttpRequest, credentials: Annotated[Any, Security(BEARER)] = None) -> Caller:
    domain: Domain = request.app.state.domain
    access = domain.policy.access
    failed_tokens = request.app.state.failed_tokens
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, N_("this endpoint needs a token: send 'Authorization: Bearer <token>'"),
                       headers={"WWW-Authenticate": "Bearer"})
    address = request.client.host if request.client else "unknown"
    wait = failed_tokens.retry_after(address)
    if wait:
        raise ApiError(429, N_("too many refused tokens from your address ({address}); try again in {wait} s").format(
            address=address, wait=wait),
                       headers={"Retry-After": str(wait)})
    found = domain.authenticate(token.strip())
    if found is None:
        if failed_tokens.record_failure(address):
            log.warning("%s presented %d refused tokens; refused for %g s", address, access.failed_token_limit,
                        access.lockout_seconds)
        state = domain.token_state(token.strip())
        why = N_("has been revoked") if state == "revoked" else N_("is not known here")
        raise ApiError(401, N_("the token {why}; ask the owner of '{domain}' for a new one").format(
            why=why, domain=domain.name),
                       headers={"WWW-Authenticate": "Bearer"})
    return Caller(*found)


def owner(c: Annotated[Caller, Depends(caller)]) -> Caller:
    if c.role != "owner":
        raise ApiError(403, N_("only the domain's owner may do this"))
    return c


def analyst(c: Annotated[Caller, Depends(caller)]) -> Caller:
    if c.role != "analyst":
        raise ApiError(403, N_("owner tokens review requests; submit with an analyst token"))
    return c


TheDomain = Annotated[Domain, Depends(the_domain)]
AnyCaller = Annotated[Caller, Depends(caller)]
Owner = Annotated[Caller, Depends(owner)]
Analyst = Annotated[Caller, Depends(analyst)]
