"""An iterative built-in seen from the analyst's side: one request per domain, approved once, then
one round per step of the fit.

Newton-type fits (the GLM's IRLS, Cox's Newton–Raphson) send the current coefficients each round and
pool what the domains release. The domains that answer the first round take part in every round; a
domain that leaves later stops the fit with its name, since a step over fewer domains would be a
step of another model.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fednb.client.http import gather, run
from fednb.client.request_args import parse_where
from fednb.errors import DomainError, ModelError, NotEnoughDomains
from fednb.models import ROUND_FINAL

if TYPE_CHECKING:
    from fednb.client.dataset import FederatedDataset


class IterativeRequest:
    """Subclasses set ``name`` (the built-in) and say what the owner reads in :meth:`description`."""

    name = ""

    def __init__(self, data: FederatedDataset, args: dict, where: Any, min_domains: int, timeout: float,
                 budget: int):
        self.data, self.args, self.min_domains, self.timeout, self.budget = data, args, min_domains, timeout, budget
        self.where = parse_where(where)
        self.request = None
        self.parts: list = []
        self.participants: list[str] | None = None
        self.missing: dict[str, str] = {}
        self.last: dict[str, dict] = {}
        self.count = 0

    def description(self) -> str:
        raise NotImplementedError

    def _open(self) -> None:
        body = {"dataset": self.data.name, "kind": "builtin", "name": self.name,
                "args": {**self.args, **({"where": self.where} if self.where else {})},
                "description": self.description(), "limits": {"max_rounds": self.budget}}
        self.request = self.data.fed.send(self.data.clients, body)
        self.parts = self.request.wait_decided(self.timeout)
        approved = {p.domain for p in self.parts}
        self.missing = {d: why for d, why in self.request.problems.items() if d not in approved}
        if len(self.parts) < self.min_domains:
            raise NotEnoughDomains(self.min_domains, len(self.parts), self.missing)

    async def _one(self, part, number: int, inputs: dict) -> dict:
        deadline = time.monotonic() + self.timeout
        try:
            state = await part.client.post_inputs_round(part.id, number, inputs, wait=self.timeout)
            while state["status"] not in ROUND_FINAL and time.monotonic() < deadline:
                state = await part.client.round(part.id, number, wait=deadline - time.monotonic())
        except DomainError as exc:
            return {"status": "failed", "reason": exc.message}
        if state["status"] not in ROUND_FINAL:
            return {"status": "failed", "reason": f"no answer within {self.timeout:g} s"}
        if state["status"] == "blocked":
            return {**state, "reason": f"blocked by disclosure control: {state.get('reason')}"}
        return state

    def round(self, inputs: dict) -> dict[str, dict]:
        """One round on every participating domain: ``{domain: released result}``, in the order the
        first round fixed."""
        if self.request is None:
            self._open()
        self.count += 1
        states = run(gather(*(self._one(p, self.count, inputs) for p in self.parts)), self.timeout + 30)
        found = {p.domain: st["result"] for p, st in zip(self.parts, states) if st["status"] == "done"}
        problems = {p.domain: st.get("reason") or st["status"] for p, st in zip(self.parts, states)
                    if st["status"] != "done"}
        if self.participants is None:
            if len(found) < self.min_domains:
                raise NotEnoughDomains(self.min_domains, len(found), {**self.missing, **problems})
            self.participants = list(found)
            self.parts = [p for p in self.parts if p.domain in found]
            self.missing.update(problems)
            _same_columns(found)
        elif problems:
            lines = "; ".join(f"{d}: {why}" for d, why in problems.items())
            raise ModelError(f"a domain gave no result in round {self.count} ({lines}); every round needs the "
                             "same domains, so fit again (or connect without it)")
        self.last = {d: found[d] for d in self.participants}
        return self.last

    def close(self) -> None:
        """No more rounds: the domains close the request."""
        if self.request is not None:
            self.request.finish()


def _same_columns(parts: dict[str, dict]) -> None:
    columns = {d: tuple(p["columns"]) for d, p in parts.items()}
    if len(set(columns.values())) > 1:
        shown = "; ".join(f"{d}: {list(c)}" for d, c in columns.items())
        raise ModelError(f"the domains built different model columns ({shown}); they may run different fednb "
                         "versions: ask their owners to upgrade, or fit on the domains that agree (domains=)")
