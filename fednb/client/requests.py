"""A request sent to several domains, and its life on each of them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from fednb import codec, i18n
from fednb.client.http import DomainClient, gather, run
from fednb.errors import AuthenticationError, DomainError, DomainUnavailable, NotEnoughDomains, NotFound
from fednb.models import FINAL_STATUSES

RETRY_SECONDS = 0.5  # between tries at a domain that went away while we wait


@dataclass
class Part:
    """One domain's copy of a federated request."""

    client: DomainClient
    id: str | None = None
    state: dict = field(default_factory=dict)
    problem: str | None = None  # we could not submit it, or lost the domain while waiting

    @property
    def domain(self) -> str:
        return self.client.name

    @property
    def status(self) -> str:
        if self.problem and not self.state:
            return "error"
        return self.state.get("status", "unknown")

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES or (self.problem is not None and self.id is None)

    @property
    def why(self) -> str | None:
        """Why this domain gives no result (None when it does, or may still)."""
        status, reason = self.status, self.state.get("reason")
        if status == "denied":
            return i18n.t("why.denied", reason=reason)
        if status == "blocked":
            return i18n.t("why.blocked", reason=reason)
        if status == "failed":
            return i18n.t("why.failed", reason=reason)
        if self.problem:
            return self.problem
        if status == "pending":
            return "still waiting for the owner's review"
        if status in ("approved", "running"):
            return f"still {status}"
        return None

    @property
    def receipts(self) -> list[dict]:
        """The domain's signed receipts of what it released for this request (``fednb verify`` checks them)."""
        return list(self.state.get("receipts") or [])

    @property
    def verified(self) -> bool:
        """True when a receipt signed by the domain covers exactly the result received (signature and
        SHA-256 checked here; pin the domain's key with ``fednb verify --pin`` to know whose it is)."""
        from fednb.domain.audit.receipts import check_result

        found = [r for r in self.receipts if r.get("body", {}).get("round") is None]
        return self.status == "done" and bool(found) and not any(
            check_result(r, self.state.get("result")) for r in found)


class FederatedRequest:
    """The same work submitted to every domain of a dataset.

    ``status`` shows where it is on each domain; :meth:`wait` waits (with progress) until every
    domain is final or the time is up; :meth:`result` returns what each domain released.
    """

    def __init__(self, dataset: str, kind: str, name: str, parts: list[Part], description: str = ""):
        self.dataset, self.kind, self.name, self.description = dataset, kind, name, description
        self.parts = parts
        self._listeners: list = []
        self._watcher = None

    # -- state ---------------------------------------------------------------------------------
    @property
    def status(self) -> dict[str, str]:
        return {p.domain: p.status for p in self.parts}

    @property
    def done(self) -> bool:
        return all(p.final for p in self.parts)

    @property
    def problems(self) -> dict[str, str]:
        return {p.domain: p.why for p in self.parts if p.why is not None}

    @property
    def table(self):
        import pandas as pd

        return pd.DataFrame([{"domain": p.domain, "request": p.id, "status": p.status,
                              "reason": p.why or p.state.get("reason") or ""} for p in self.parts])

    def on_change(self, listener) -> None:
        """Call ``listener(self)`` whenever a domain's state changes (widgets use this)."""
        self._listeners.append(listener)

    def off_change(self, listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def watch(self):
        """Follow this request in a background thread until every domain is final; listeners hear
        each change (one watcher per request, however many widgets show it)."""
        from fednb.client.watch import Watcher

        if self._watcher is None:
            self._watcher = Watcher(self)
        return self._watcher.start()

    def _changed(self) -> None:
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception:  # a display problem must never break the request
                pass

    # -- waiting -------------------------------------------------------------------------------
    def refresh(self) -> FederatedRequest:
        run(gather(*(self._poll(p, 0.0) for p in self.parts if p.id and not p.final)))
        self._changed()
        return self

    def wait_decided(self, timeout: float = 600, *, poll: float = 0.5) -> list[Part]:
        """For requests that run in rounds: wait until no domain is still pending review; returns
        the parts approved (the others' reasons are in :attr:`problems`)."""
        deadline = time.monotonic() + timeout
        while any(p.status == "pending" for p in self.parts) and time.monotonic() < deadline:
            time.sleep(poll)
            self.refresh()
        return [p for p in self.parts if p.status in ("approved", "running")]

    def finish(self) -> None:
        """End a request that runs in rounds on every domain (no more rounds)."""
        run(gather(*(p.client.finish(p.id) for p in self.parts if p.id), return_exceptions=True))

    def wait(self, timeout: float = 60, *, progress: bool | None = None) -> FederatedRequest:
        """Wait until every domain is final, or ``timeout`` seconds; never raises for a slow domain."""
        from fednb.client.progress import Progress
        from fednb.i18n import t

        bar = Progress(total=len(self.parts), desc=t("progress.wait", name=self.name, n=len(self.parts)),
                       enabled=progress, initial=sum(p.final for p in self.parts))
        deadline = time.monotonic() + timeout

        async def follow(part: Part) -> None:
            while not part.final:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                await self._poll(part, remaining)
                if part.problem and not part.final:
                    await asyncio.sleep(min(RETRY_SECONDS, max(0.0, deadline - time.monotonic())))
            bar.update(1)
            self._changed()

        try:
            run(gather(*(follow(p) for p in self.parts if p.id and not p.final)), timeout + 30)
        finally:
            bar.close()
        self._changed()
        return self

    async def _poll(self, part: Part, wait: float) -> None:
        try:
            part.state = await part.client.request(part.id, wait=wait)
            part.problem = None
        except DomainUnavailable as exc:
            part.problem = f"unreachable: {exc.message}"
        except (AuthenticationError, NotFound, DomainError) as exc:
            part.problem = exc.message
            part.id = None if isinstance(exc, (AuthenticationError, NotFound)) else part.id

    # -- results -------------------------------------------------------------------------------
    def results(self) -> dict[str, Any]:
        """What each domain released so far ({domain: value}), decoded into numpy/pandas objects."""
        return {p.domain: codec.decode(p.state.get("result")) for p in self.parts if p.status == "done"}

    def raw_results(self) -> dict[str, Any]:
        return {p.domain: p.state.get("result") for p in self.parts if p.status == "done"}

    @property
    def receipts(self) -> dict[str, list[dict]]:
        """Each domain's signed receipts ({domain: [receipt, ...]})."""
        return {p.domain: p.receipts for p in self.parts if p.receipts}

    def save(self, path) -> None:
        """Write the released results with their receipts to a JSON file that ``fednb verify FILE``
        checks offline, e.g. to accompany a published number."""
        import json
        from pathlib import Path

        data = {"format": "fednb-results/1", "dataset": self.dataset, "what": f"{self.kind}:{self.name}",
                "domains": {p.domain: {"request": p.id, "result": p.state.get("result"), "receipts": p.receipts}
                            for p in self.parts if p.status == "done"}}
        Path(path).write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")

    def result(self, *, min_domains: int = 1, timeout: float | None = None) -> dict[str, Any]:
        """Released results by domain; raises :class:`NotEnoughDomains` (with every reason) if too few."""
        if timeout is not None and not self.done:
            self.wait(timeout)
        out = self.results()
        if len(out) < min_domains:
            raise NotEnoughDomains(min_domains, len(out), self.problems)
        return out

    def __repr__(self) -> str:
        lines = [f"<FederatedRequest {self.kind}:{self.name} on {self.dataset!r}>"]
        lines += [f"  {p.domain}: {p.status}" + (f" ({p.why})" if p.why and p.status != 'pending' else "")
                  for p in self.parts]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The tracker's table (each domain's state and its released value as small tables) for saved
        notebooks and exports; the plain listing where fednb[widgets] is not installed."""
        try:
            from fednb.widgets.tracker import rows_html, title_html
        except ImportError:
            return f"<b>{self.kind}:{self.name}</b> on <code>{self.dataset}</code>" + self.table.to_html(index=False)
        return title_html(self) + rows_html(self)

    def _ipython_display_(self) -> None:
        from fednb.display import show  # a live tracker widget where ipywidgets can show one

        show(self)
