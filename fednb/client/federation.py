"""A federation: the domains one analyst is connected to. There is no central server; this
object fans out to every domain concurrently and combines what they release."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

from fednb.client import profile as profiles
from fednb.client import tls
from fednb.client.http import DomainClient, fan_out, gather, run
from fednb.client.requests import FederatedRequest, Part
from fednb.errors import (
    AuthenticationError,
    CertificateError,
    DomainError,
    FednbError,
    InvalidInput,
    NotEnoughDomains,
    NotFound,
)


class Federation:
    """Connected domains. Create with :func:`fednb.connect`."""

    def __init__(self, clients: list[DomainClient], infos: dict[str, dict], down: dict[str, str]):
        self._clients = {c.name: c for c in clients}
        self._infos = infos
        self._down = down

    # -- connecting ----------------------------------------------------------------------------
    @classmethod
    def connect(cls, urls: str | Iterable[str] | None = None, *, token: str | None = None,
                tokens: dict[str, str] | None = None, profile: str | None = None, timeout: float = 10.0,
                verify: bool | str = True, min_domains: int = 1) -> Federation:
        entries = _entries(urls, token, tokens, profile)
        verify = tls.trust(verify)  # one SSL context for every domain, not one each
        clients = [DomainClient(url, tok, timeout=timeout, verify=verify) for url, tok in entries]

        async def hello(client: DomainClient) -> dict:
            info = await client.info()
            session = await client.session()
            return {**info, "analyst": session["analyst"], "role": session["role"]}

        infos, problems = run(fan_out({c.url: hello(c) for c in clients}))
        by_url = {c.url: c for c in clients}
        refused = {url: exc for url, exc in problems.items() if isinstance(exc, AuthenticationError)}
        if refused:
            lines = "; ".join(f"{by_url[u].name}: {exc.message}" for u, exc in refused.items())
            raise AuthenticationError(", ".join(by_url[u].name for u in refused), lines)
        untrusted = [exc for exc in problems.values() if isinstance(exc, CertificateError)]
        if untrusted:  # a configuration problem, not a domain that is down: say so now
            raise untrusted[0]
        _dedupe_names(clients)
        down = {by_url[url].name: exc.message for url, exc in problems.items()}
        for name, why in down.items():
            warnings.warn(f"domain {name} is not reachable now ({why}); it is kept and retried on each call",
                          stacklevel=2)
        if len(infos) < min_domains:
            raise NotEnoughDomains(min_domains, len(infos), down)
        return cls(clients, {by_url[u].name: info for u, info in infos.items()}, down)

    def close(self) -> None:
        run(gather(*(c.aclose() for c in self._clients.values())))

    def __enter__(self) -> Federation:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what is there -------------------------------------------------------------------------
    @property
    def domains(self) -> list[str]:
        return list(self._clients)

    def client(self, domain: str) -> DomainClient:
        try:
            return self._clients[domain]
        except KeyError:
            raise NotFound(f"not connected to a domain named {domain!r}; connected: {self.domains}") from None

    @property
    def status(self):
        """One row per domain: reachable or not, version, sandbox isolation, who you are there."""
        import pandas as pd

        infos, problems = run(fan_out({n: c.info() for n, c in self._clients.items()}))
        rows = []
        for name, client in self._clients.items():
            info = infos.get(name, {})
            rows.append({"domain": name, "url": client.url, "up": name in infos,
                         "version": info.get("version"), "isolation": (info.get("isolation") or {}).get("level"),
                         "problem": problems[name].message if name in problems else ""})
        return pd.DataFrame(rows)

    @property
    def datasets(self):
        """domain, dataset, rows (rounded), columns, description: metadata only, never data."""
        import pandas as pd

        found, problems = run(fan_out({n: c.datasets() for n, c in self._clients.items()}))
        self._warn(problems)
        rows = [{"domain": d, "dataset": ds["name"], "rows": ds["rows"], "columns": len(ds["columns"]),
                 "description": ds.get("description", "")}
                for d, listing in found.items() for ds in listing]
        return pd.DataFrame(rows, columns=["domain", "dataset", "rows", "columns", "description"])

    def catalog(self, *, quiet: bool = False) -> dict[str, list[dict]]:
        """Every dataset's full metadata (schema included), by domain; unreachable domains are left
        out (with a warning unless ``quiet``: a widget shows them its own way)."""
        found, problems = run(fan_out({n: c.datasets() for n, c in self._clients.items()}))
        if not quiet:
            self._warn(problems)
        return found

    def dataset(self, name: str, *, domains: Iterable[str] | None = None):
        """The dataset ``name`` on every connected domain that has it (or on ``domains``)."""
        from fednb.client.dataset import FederatedDataset

        chosen = [self.client(d) for d in domains] if domains is not None else list(self._clients.values())
        found, problems = run(fan_out({c.name: c.dataset(name) for c in chosen}))
        self._warn({d: exc for d, exc in problems.items() if not isinstance(exc, NotFound)})
        if not found:
            detail = "; ".join(f"{d}: {exc.message}" for d, exc in problems.items()) or "no domains"
            raise NotFound(f"no connected domain has a dataset {name!r} ({detail})")
        return FederatedDataset(self, name, {d: self._clients[d] for d in found}, found)

    def requests(self):
        """My requests on every domain, newest first."""
        import pandas as pd

        found, problems = run(fan_out({n: c.requests() for n, c in self._clients.items()}))
        self._warn(problems)
        rows = [{"domain": d, "request": r["id"], "dataset": r["dataset"], "kind": r["kind"], "name": r["name"],
                 "status": r["status"], "reason": r.get("reason") or "", "created": _local_second(r["created_at"])}
                for d, reqs in found.items() for r in reqs]
        df = pd.DataFrame(rows, columns=["domain", "request", "dataset", "kind", "name", "status", "reason", "created"])
        return df.sort_values("created", ascending=False, ignore_index=True)

    def _warn(self, problems: dict[str, DomainError]) -> None:
        for domain, exc in problems.items():
            warnings.warn(f"domain {domain}: {exc.message}", stacklevel=3)

    # -- sending -------------------------------------------------------------------------------
    def send(self, clients: dict[str, DomainClient], body: dict, *, wait: float = 0) -> FederatedRequest:
        """Send the same request to ``clients``; failures to send are recorded, not raised."""

        errors: dict[str, DomainError] = {}

        async def one(client: DomainClient) -> Part:
            part = Part(client)
            try:
                part.state = await client.post_request(body, wait=wait)
                part.id = part.state["id"]
            except DomainError as exc:
                part.problem = exc.message
                errors[client.name] = exc
            return part

        parts = run(gather(*(one(c) for c in clients.values())))
        # The same bad input everywhere is the analyst's mistake: say so at once, not as N missing domains.
        if len(errors) == len(parts) and all(e.status in (400, 404, 409, 422) for e in errors.values()):
            lines = "; ".join(f"{d}: {e.message}" for d, e in errors.items())
            raise InvalidInput(f"every domain refused the request: {lines}")
        return FederatedRequest(body["dataset"], body["kind"], body["name"], list(parts),
                                body.get("description", ""))

    def __repr__(self) -> str:
        down = f", {len(self._down)} down at connect" if self._down else ""
        return f"<Federation of {len(self._clients)} domain(s): {', '.join(self.domains)}{down}>"

    def _ipython_display_(self) -> None:
        from fednb.display import show  # a browser of domains and datasets where ipywidgets can show one

        show(self)


def _entries(urls, token, tokens, profile) -> list[tuple[str, str | None]]:
    if urls is None:
        saved = profiles.load(profile or profiles.DEFAULT)
        return [(d["url"], d.get("token")) for d in saved]
    if profile is not None:
        raise InvalidInput("give either urls or a profile, not both")
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise InvalidInput("no domains to connect to")
    tokens = {u.rstrip("/"): t for u, t in (tokens or {}).items()}
    out = []
    for url in urls:
        tok = tokens.get(url.rstrip("/"), token)
        if tok is None:
            raise InvalidInput(f"no token for {url}: pass token=... or tokens={{url: token}}")
        out.append((url, tok))
    return out


def _dedupe_names(clients: list[DomainClient]) -> None:
    seen: dict[str, int] = {}
    for c in clients:
        seen[c.name] = seen.get(c.name, 0) + 1
    for c in clients:
        if seen[c.name] > 1:
            c.name = f"{c.name}@{c.url.split('://', 1)[-1]}"


def connect(urls: str | Iterable[str] | None = None, **kwargs: Any) -> Federation:
    """Connect to one or many domains: ``fednb.connect([url, ...], token=...)``, ``tokens={url: token}``,
    or a saved ``profile=``. Records a ``connect`` in each domain's audit log."""
    global last_connected
    last_connected = Federation.connect(urls, **kwargs)
    return last_connected


last_connected: Federation | None = None  # the notebook's ``%%fednb submit`` uses it when no --fed is given


__all__ = ["Federation", "connect", "FednbError"]


def _local_second(epoch: float):
    """A domain's UNIX time as a local wall-clock time to the second (not UTC to the nanosecond)."""
    import datetime as dt

    import pandas as pd

    local = dt.datetime.now().astimezone().tzinfo
    return pd.Timestamp(epoch, unit="s", tz="UTC").tz_convert(local).floor("s").tz_localize(None)
