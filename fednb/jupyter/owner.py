"""The owner's side of the panels: pending requests on the domains they own, one request with its
code and the diff against what they approved before, and their decision.

An owner credential is either a domain folder on this machine (:class:`FolderOwner`: the same
:class:`~fednb.domain.Domain` the CLI uses; a serving domain picks the decision up at once) or a
domain URL with an owner token (:class:`RemoteOwner`: the domain's owner endpoints).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fednb.client import profile as profiles
from fednb.client.http import DomainClient
from fednb.errors import DomainError, FednbError
from fednb.jupyter import review
from fednb.jupyter.errors import ApiError, UnknownDomain
from fednb.jupyter.present import request_detail, request_row

RECENT = 20  # decided requests listed under the pending ones
# What the domain checks on this request's output, for the review panel (keyed by unchecked_output).
OUTPUT_CHECK = {
    False: "checked: only fednb.table/fednb.stat values the domain verifies row by row, and short labels, can leave",
    True: "NOT CHECKED: this dataset's policy (disclosure.unchecked_output) lets custom code release numbers the "
          "domain cannot check; your review is the only check",
    None: "unknown: see disclosure.unchecked_output in the domain's policy.toml",
}
TIMEOUT_S = 5.0


class FolderOwner:
    kind = "folder"

    def __init__(self, path: str):
        self.location = path
        self._domain = None

    def _open(self):
        if self._domain is None:
            from fednb.domain import Domain

            self._domain = Domain(self.location)
        return self._domain

    async def _call(self, fn, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))

    async def name(self) -> str:
        return (await self._call(self._open)).name

    async def requests(self) -> list[dict]:
        return [r.model_dump() for r in await self._call(lambda: self._open().requests(limit=500))]

    async def request(self, request_id: str) -> dict:
        return (await self._call(lambda: self._open().request(request_id))).model_dump()

    async def approve(self, request_id: str, reason: str) -> dict:
        return (await self._call(lambda: self._open().approve(request_id, reason))).model_dump()

    async def deny(self, request_id: str, reason: str) -> dict:
        return (await self._call(lambda: self._open().deny(request_id, reason))).model_dump()

    async def datasets(self) -> list[dict]:
        return [d.model_dump() for d in await self._call(lambda: self._open().datasets())]

    async def unchecked_output(self, dataset: str) -> bool | None:
        """Whether this domain's policy lets custom code on ``dataset`` release unchecked numbers."""
        return await self._call(lambda: self._open().policy.disclosure.allows_unchecked(dataset))


class RemoteOwner:
    kind = "url"

    def __init__(self, url: str, token: str):
        self.location = url
        self.client = DomainClient(url, token, timeout=TIMEOUT_S, retries=0)

    async def name(self) -> str:
        return (await self.client.info())["name"]

    async def requests(self) -> list[dict]:
        return await self.client.requests()

    async def request(self, request_id: str) -> dict:
        return await self.client.request(request_id)

    async def approve(self, request_id: str, reason: str) -> dict:
        return await self.client.approve(request_id, reason)

    async def deny(self, request_id: str, reason: str) -> dict:
        return await self.client.deny(request_id, reason)

    async def datasets(self) -> list[dict]:
        return await self.client.datasets()

    async def unchecked_output(self, dataset: str) -> bool | None:
        """Unknown over HTTP: the owner endpoints do not publish the policy."""
        return None


def make_source(entry: dict):
    if isinstance(entry.get("path"), str):
        return FolderOwner(entry["path"])
    if isinstance(entry.get("url"), str) and isinstance(entry.get("token"), str):
        return RemoteOwner(entry["url"], entry["token"])
    raise ApiError(500, "api.bad_owner_entry", entry=sorted(entry))


def _entry_key(entry: dict) -> tuple:
    return (entry.get("path"), entry.get("url"), entry.get("token"))


class OwnerService:
    def __init__(self, profile_name: str, configured: list[dict]):
        self.profile_name = profile_name
        self.configured = list(configured)
        self._sources: dict[tuple, Any] = {}
        self._names: dict[tuple, str] = {}

    def entries(self) -> list[dict]:
        return self.configured + profiles.load_owner(self.profile_name)

    async def sources(self) -> tuple[dict[str, Any], list[dict]]:
        """({domain name: source}, [one status row per credential])."""
        entries = self.entries()
        if not entries:
            raise ApiError(404, "api.no_owner")
        keys = []
        for entry in entries:
            key = _entry_key(entry)
            if key not in self._sources:
                self._sources[key] = make_source(entry)
            keys.append(key)
        unnamed = [k for k in keys if k not in self._names]
        names = await asyncio.gather(*(self._sources[k].name() for k in unnamed), return_exceptions=True)
        rows = []
        for key, name in zip(unnamed, names):
            if isinstance(name, str):
                self._names[key] = name
            else:
                rows.append({"domain": None, "kind": self._sources[key].kind, "location": self._sources[key].location,
                             "problem": _message(name)})
        by_name: dict[str, Any] = {}
        for key in keys:
            if key in self._names:
                name = self._names[key]
                while name in by_name:  # the same domain twice (a folder and its URL): the first one wins
                    name += "'"
                by_name[name] = self._sources[key]
                rows.append({"domain": name, "kind": self._sources[key].kind,
                             "location": self._sources[key].location, "problem": ""})
        return by_name, rows

    async def _source(self, domain: str):
        by_name, _ = await self.sources()
        if domain not in by_name:
            raise UnknownDomain(domain)
        return by_name[domain]

    async def listing(self) -> dict:
        """Pending requests on every owned domain (oldest first: first come, first reviewed) and
        the most recently decided ones."""
        by_name, rows = await self.sources()
        found = await asyncio.gather(*(s.requests() for s in by_name.values()), return_exceptions=True)
        pending, decided = [], []
        for row in rows:
            if row["domain"] is None:
                continue
            listing = found[list(by_name).index(row["domain"])]
            if not isinstance(listing, list):
                row["problem"] = _message(listing)
                continue
            for r in listing:
                (pending if r["status"] == "pending" else decided).append(request_row(row["domain"], r))
        pending.sort(key=lambda r: r["created_at"])
        decided = [r for r in decided if r.get("decided_by") != "policy"]
        decided.sort(key=lambda r: r.get("decided_at") or r["created_at"], reverse=True)
        return {"domains": rows, "pending": pending, "recent": decided[:RECENT], "mocks": await self._mocks(by_name)}

    async def _mocks(self, by_name: dict[str, Any]) -> list[dict]:
        """Each dataset's mock: tier, review status and the report's summary (utility and risk), so the
        owner sees what analysts are (or would be) served; approving stays a CLI step."""
        found = await asyncio.gather(*(s.datasets() for s in by_name.values()), return_exceptions=True)
        rows = []
        for domain, datasets in zip(by_name, found):
            if isinstance(datasets, list):
                rows += [{"domain": domain, "dataset": d["name"], **d["mock"]} for d in datasets if d.get("mock")]
        return rows

    async def detail(self, domain: str, request_id: str) -> dict:
        source = await self._source(domain)
        current = await source.request(request_id)
        previous = None
        if current.get("code"):
            listing = await source.requests()
            prior = review.previous_version(current, listing)
            if prior is not None:
                previous = await source.request(prior["id"])
        unchecked = await source.unchecked_output(current["dataset"]) if current.get("kind") == "function" else False
        return {**request_detail(domain, current), "previous": review.comparison(current, previous),
                "unchecked_output": unchecked, "output_check": OUTPUT_CHECK[unchecked]}

    async def decide(self, domain: str, request_id: str, *, approve: bool, reason: str) -> dict:
        source = await self._source(domain)
        decided = await (source.approve(request_id, reason) if approve else source.deny(request_id, reason))
        return request_row(domain, decided)

    async def approve_everywhere(self, domain: str, request_id: str, reason: str) -> dict:
        """Approve the request here and its copies with the same code hash on every owned domain
        (:mod:`fednb.jupyter.approve_all`); one outcome per domain's request."""
        from fednb.jupyter.approve_all import approve_everywhere

        by_name, _ = await self.sources()
        if domain not in by_name:
            raise UnknownDomain(domain)
        outcomes = await approve_everywhere(by_name, domain, request_id, reason)
        return {"outcomes": [o.to_dict() for o in outcomes]}


def _message(exc: BaseException) -> str:
    if isinstance(exc, DomainError):
        return exc.message
    if isinstance(exc, FednbError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
