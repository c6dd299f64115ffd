"""The domain's HTTP API: one router per resource (``info``, ``datasets``, ``requests``, ``rounds``,
``audit``, ``privacy``). Routes only: every decision is made by :class:`fednb.domain.Domain`.

Nothing blocks the event loop: every store call runs in a worker thread, and long-polls wait on an
asyncio event, not in a held thread (:mod:`.waiting`), so one slow query or a hundred waiting clients
never stall another analyst. Bodies are bounded in size and time (:mod:`.bodylimit`); errors are
JSON sentences, never tracebacks (:mod:`.errors`).
"""

from fastapi import FastAPI

from fednb._version import __version__
from fednb.domain.api import audit, datasets, errors, info, requests, rounds
from fednb.domain.api import privacy as privacy_api
from fednb.domain.api.auth import Analyst, AnyCaller
from fednb.domain.api.bodylimit import MAX_BODY_BYTES, BodyLimit
from fednb.domain.api.language import AnswerInLanguage
from fednb.domain.api.ratelimit import FailedTokenLimiter
from fednb.domain.api.waiting import Notifier
from fednb.domain.domain import Domain
from fednb.models import DomainInfo

# What /v1/info shows anyone: the level and which walls held, never the owner's paths or notes.
PUBLIC_ISOLATION = ("level", "netns", "mountns", "pidns", "userns", "landlock_abi", "seccomp", "uid_drop",
                    "tmpfs", "probe", "cgroup")


def create_app(domain: Domain, *, isolation: dict | None = None) -> FastAPI:
    app = FastAPI(title=f"fednb domain {domain.name}", version=__version__, docs_url=None, redoc_url=None,
                  description="The API of one fednb data domain. Analysts see metadata, mocks and released "
                              "results of approved requests; owners review requests and read the audit log.")
    notifier = Notifier()
    domain.subscribe(notifier.fire_threadsafe)
    access = domain.policy.access
    app.state.domain = domain
    app.state.notifier = notifier
    app.state.info = DomainInfo(name=domain.name, version=__version__, isolation=public_isolation(isolation),
                                description=domain.policy.domain.description)
    app.state.failed_tokens = FailedTokenLimiter(access.failed_token_limit, access.failed_token_window_seconds,
                                                 access.lockout_seconds)
    errors.install(app)
    for module in (info, datasets, requests, audit, rounds):
        app.include_router(module.router)
    privacy_api.add_routes(app, domain, caller=AnyCaller, analyst=Analyst, responses=errors.CONFLICT)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES, large=domain.policy.learning.max_model_mb * 1_000_000)
    app.add_middleware(AnswerInLanguage)  # outermost: refusals of the body limit are translated too
    return app


def public_isolation(isolation: dict | None) -> dict:
    """The sandbox report without its free-text details (they name folders on the owner's machine)."""
    isolation = isolation or {"level": "none"}
    return {k: isolation[k] for k in PUBLIC_ISOLATION if k in isolation}
