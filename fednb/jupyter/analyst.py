"""The analyst's side of the panels: the profile's domains, their datasets, my requests.

Runs on the Jupyter server's event loop with the profile's tokens, which never reach the browser.
A domain that is down is a row that says so, never an error for the whole panel.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fednb.client import profile as profiles
from fednb.client.http import DomainClient
from fednb.errors import DomainError, NotFound
from fednb.jupyter.errors import ApiError, UnknownDomain
from fednb.jupyter.present import request_detail, request_row

GROUP_SECONDS = 10.0  # copies of one submission reach the domains within this of each other
TIMEOUT_S = 5.0


class AnalystService:
    def __init__(self, profile_name: str):
        self.profile_name = profile_name
        self._clients: dict[tuple[str, str | None], DomainClient] = {}
        self._who: dict[str, str] = {}  # url -> my name there (asked once: each ask is an audit entry)
        self._names: dict[str, str] = {}  # url -> the domain's name

    def clients(self) -> list[DomainClient]:
        """The profile's domains, re-read on every call (a new profile takes effect at once)."""
        try:
            entries = profiles.load(self.profile_name)
        except NotFound:
            raise ApiError(404, "api.no_profile", profile=self.profile_name) from None
        wanted = [(e["url"].rstrip("/"), e.get("token")) for e in entries]
        for key in set(self._clients) - set(wanted):
            asyncio.ensure_future(self._clients.pop(key).aclose())
        for url, token in wanted:
            if (url, token) not in self._clients:
                self._clients[(url, token)] = DomainClient(url, token, timeout=TIMEOUT_S, retries=0)
        return [self._clients[k] for k in wanted]

    async def _named(self) -> list[DomainClient]:
        """The clients, each having learnt its domain's name (rows and URLs use it)."""
        clients = self.clients()
        unnamed = [c for c in clients if c.url not in self._names]
        infos = await asyncio.gather(*(c.info() for c in unnamed), return_exceptions=True)
        for client, info in zip(unnamed, infos):
            if isinstance(info, dict):
                self._names[client.url] = client.name
        return clients

    async def _each(self, call) -> list[tuple[DomainClient, Any]]:
        """``call(client)`` on every domain at once: [(client, value or the DomainError)]."""
        clients = await self._named()
        values = await asyncio.gather(*(call(c) for c in clients), return_exceptions=True)
        for value in values:
            if isinstance(value, BaseException) and not isinstance(value, DomainError):
                raise value
        return list(zip(clients, values))

    async def domains(self) -> list[dict]:
        async def one(client: DomainClient) -> dict:
            info = await client.info()
            if client.url not in self._who:
                self._who[client.url] = (await client.session())["analyst"]
            return info

        rows = []
        for client, info in await self._each(one):
            ok = not isinstance(info, DomainError)
            rows.append({"domain": client.name, "url": client.url, "up": ok,
                         "version": info.get("version") if ok else None,
                         "isolation": (info.get("isolation") or {}).get("level") if ok else None,
                         "analyst": self._who.get(client.url),
                         "problem": "" if ok else info.message})
        return rows

    async def datasets(self) -> list[dict]:
        rows = []
        for client, listing in await self._each(lambda c: c.datasets()):
            if isinstance(listing, DomainError):
                continue
            for ds in listing:
                rows.append({"domain": client.name, "name": ds["name"], "rows": ds["rows"],
                             "columns": [c["name"] for c in ds["columns"]], "description": ds.get("description", "")})
        return sorted(rows, key=lambda r: (r["name"], r["domain"]))

    async def requests(self) -> dict:
        """My requests, one entry per submission with its copy on each domain, newest first."""
        rows, problems = [], {}
        for client, listing in await self._each(lambda c: c.requests()):
            if isinstance(listing, DomainError):
                problems[client.name] = listing.message
                continue
            rows.extend(request_row(client.name, r) for r in listing)
        return {"submissions": group(rows), "problems": problems}

    async def request(self, domain: str, request_id: str) -> dict:
        client = next((c for c in await self._named() if c.name == domain), None)
        if client is None:
            raise UnknownDomain(domain)
        return request_detail(client.name, await client.request(request_id))


def group(rows: list[dict]) -> list[dict]:
    """Copies of one federated submission (same dataset, code hash and description, sent within
    :data:`GROUP_SECONDS`) become one entry with a part per domain."""
    out: list[dict] = []
    open_groups: dict[tuple, dict] = {}
    for row in sorted(rows, key=lambda r: r["created_at"]):
        key = (row["dataset"], row["kind"], row["name"], row["code_hash"], row["description"])
        current = open_groups.get(key)
        if current is None or row["created_at"] - current["created_at"] > GROUP_SECONDS \
                or row["domain"] in {p["domain"] for p in current["parts"]}:
            current = {k: row[k] for k in ("dataset", "kind", "name", "description", "code_hash", "created_at")}
            current["parts"] = []
            open_groups[key] = current
            out.append(current)
        current["parts"].append({k: row[k] for k in ("domain", "id", "status", "reason", "decided_at", "finished_at")})
    return sorted(out, key=lambda g: g["created_at"], reverse=True)
