"""The server extension's routes under ``/fednb/api/``. Routes only: the work is in
:mod:`fednb.jupyter.analyst` and :mod:`fednb.jupyter.owner`.

Every route needs Jupyter's own authentication. Errors are JSON ``{"error": message}`` in the
caller's language (``?lang=`` or ``Accept-Language``), never a traceback; an unexpected one is
logged with a reference the message gives.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from fednb.errors import AuthenticationError, DomainError, DomainUnavailable, FednbError, InvalidInput, NotFound
from fednb.i18n import normalize, speaking, t, table
from fednb.jupyter.analyst import AnalystService
from fednb.jupyter.config import Fednb
from fednb.jupyter.errors import ApiError, UnknownDomain
from fednb.jupyter.owner import OwnerService
from fednb.locale import translate, translate_fields

log = logging.getLogger("fednb.jupyter")

ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
DOMAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@\-\[\]']{0,200}$")
MAX_REASON = 5000


class FednbHandler(APIHandler):
    """JSON in, JSON out, fednb errors as statuses a front end can act on."""

    def initialize(self, analyst: AnalystService, owner: OwnerService) -> None:
        self.analyst, self.owner = analyst, owner

    @property
    def lang(self) -> str:
        return normalize(self.get_query_argument("lang", None) or self.request.headers.get("Accept-Language", "en"))

    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": translate(message, self.lang)}))  # a domain's refusal, in the lab's language

    async def answer(self, work) -> None:
        try:
            with speaking(self.lang):  # result tables and captions built for this request: in the lab's language
                result = await work
        except ApiError as exc:
            return self.fail(exc.status, t(exc.key, self.lang, **exc.fields))
        except UnknownDomain as exc:
            return self.fail(404, t("api.unknown_domain", self.lang, domain=exc.domain))
        except AuthenticationError as exc:
            return self.fail(502, f"[{exc.domain}] {exc.message}")  # our token was refused by the domain
        except DomainUnavailable as exc:
            return self.fail(503, f"[{exc.domain}] {exc.message}")
        except DomainError as exc:
            status = exc.status if exc.status and 400 <= exc.status < 500 else 502
            return self.fail(status, f"[{exc.domain}] {exc.message}")
        except NotFound as exc:
            return self.fail(404, str(exc))
        except InvalidInput as exc:
            conflict = type(exc).__name__ == "Conflict"  # fednb.domain.review.requests.Conflict: already decided
            return self.fail(409 if conflict else 400, str(exc))
        except FednbError as exc:
            return self.fail(500, str(exc))
        except Exception:
            ref = secrets.token_hex(4)
            log.exception("fednb handler error (ref %s)", ref)
            return self.fail(500, t("api.unexpected", self.lang, ref=ref))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(translate_fields(result, self.lang), default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado's own errors (403 unauthenticated, 404, 405) as JSON, without a traceback."""
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": self._reason or f"HTTP {status_code}"}))

    def body(self) -> dict:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise ApiError(400, "api.bad_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, "api.bad_json")
        return data

    @staticmethod
    def check(domain: str, request_id: str | None = None) -> None:
        if not DOMAIN.match(domain):
            raise ApiError(400, "api.bad_id", what="domain", value=domain)
        if request_id is not None and not ID.match(request_id):
            raise ApiError(400, "api.bad_id", what="request", value=request_id)


class StringsHandler(FednbHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        async def strings() -> dict:
            return {"language": self.lang, "strings": table(self.lang)}

        await self.answer(strings())


class AnalystHandler(FednbHandler):
    """GET /fednb/api/analyst/(domains|datasets|requests)"""

    @tornado.web.authenticated
    async def get(self, what: str) -> None:
        call = {"domains": self.analyst.domains, "datasets": self.analyst.datasets,
                "requests": self.analyst.requests}[what]
        await self.answer(call())


class AnalystRequestHandler(FednbHandler):
    """GET /fednb/api/analyst/requests/DOMAIN/ID: one of my requests with its released result."""

    @tornado.web.authenticated
    async def get(self, domain: str, request_id: str) -> None:
        async def work():
            self.check(domain, request_id)
            return await self.analyst.request(domain, request_id)

        await self.answer(work())


class OwnerListHandler(FednbHandler):
    """GET /fednb/api/owner/requests: pending on every owned domain, and recent decisions."""

    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer(self.owner.listing())


class OwnerRequestHandler(FednbHandler):
    """GET /fednb/api/owner/requests/DOMAIN/ID: the request, its code, and the diff against the
    version approved before."""

    @tornado.web.authenticated
    async def get(self, domain: str, request_id: str) -> None:
        async def work():
            self.check(domain, request_id)
            return await self.owner.detail(domain, request_id)

        await self.answer(work())


class OwnerDecisionHandler(FednbHandler):
    """POST /fednb/api/owner/requests/DOMAIN/ID/(approve|deny|approve-all) with {"reason": TEXT};
    approve-all also approves the copies with the same code hash on the owner's other domains."""

    @tornado.web.authenticated
    async def post(self, domain: str, request_id: str, action: str) -> None:
        async def work():
            self.check(domain, request_id)
            reason = self.body().get("reason", "")
            if not isinstance(reason, str) or len(reason) > MAX_REASON:
                raise ApiError(400, "api.reason_type")
            if action == "deny" and not reason.strip():
                raise ApiError(400, "api.need_reason")
            if action == "approve-all":
                return await self.owner.approve_everywhere(domain, request_id, reason.strip())
            return await self.owner.decide(domain, request_id, approve=action == "approve", reason=reason.strip())

        await self.answer(work())


class NoRouteHandler(FednbHandler):
    """Anything else under /fednb/api/: a JSON 404, not Jupyter's HTML page."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, reason="no such fednb endpoint")


def setup_handlers(server_app: Any) -> None:
    web_app = server_app.web_app
    settings = Fednb(parent=server_app)
    services = {"analyst": AnalystService(settings.profile), "owner": OwnerService(settings.profile, settings.owners)}
    base = url_path_join(web_app.settings["base_url"], "fednb", "api")
    segment = r"([^/]+)"
    routes = [
        (url_path_join(base, "strings"), StringsHandler),
        (url_path_join(base, "analyst", "(domains|datasets|requests)"), AnalystHandler),
        (url_path_join(base, "analyst", "requests", segment, segment), AnalystRequestHandler),
        (url_path_join(base, "owner", "requests"), OwnerListHandler),
        (url_path_join(base, "owner", "requests", segment, segment), OwnerRequestHandler),
        (url_path_join(base, "owner", "requests", segment, segment, "(approve|deny|approve-all)"), OwnerDecisionHandler),
        (url_path_join(base, ".*"), NoRouteHandler),
    ]
    web_app.add_handlers(".*$", [(route, handler, services) for route, handler in routes])
    server_app.log.info("fednb: JupyterLab panels at %s (profile %r)", base, settings.profile)
