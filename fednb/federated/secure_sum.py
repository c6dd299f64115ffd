"""The analyst's side of secure aggregation: relay keys and sealed shares, sum the masked inputs,
remove the masks, learn only the sum (Bonawitz et al., "Practical Secure Aggregation for
Privacy-Preserving Machine Learning", CCS 2017, §4; the domains' side is :mod:`fednb.domain.release.secure_aggregation`).
Each domain signs its keys and checks the others' signatures against the peers its owner pinned,
so this side relays the signed messages untouched: it cannot stand in for a domain.

The four steps fan out to every domain still in the session. A domain that fails a step is dropped
from it with its reason; as long as ``threshold`` domains answer each step, the sum of those whose
masked input arrived is recovered: their self masks from the b-shares, the pairwise masks of any
domain that vanished after sending shares from its mask-key shares (Shamir).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fednb.client.http import DomainClient, run
from fednb.errors import DomainError, NotEnoughDomains


@dataclass
class Member:
    """One domain's input to a secure sum: its secure request (and training round)."""

    client: DomainClient
    request_id: str
    round: int | None = None


@dataclass
class SecureResult:
    total: np.ndarray
    included: list[str]
    dropped: dict[str, str] = field(default_factory=dict)


def default_threshold(n: int) -> int:
    """More than half of the domains (and at least 2): two disjoint halves can never both unmask."""
    return max(2, n // 2 + 1)


class SecureSum:
    """One session over ``members`` ({domain name: Member}); ``await`` the steps in order, or :meth:`run`."""

    def __init__(self, members: dict[str, Member], *, threshold: int | None = None, session: str | None = None):
        self.names = list(members)
        self.members = {i + 1: m for i, m in enumerate(members.values())}
        self.n = len(members)
        self.threshold = threshold or default_threshold(self.n)
        self.session = session or secrets.token_urlsafe(18)
        self.dropped: dict[str, str] = {}
        self.keys: dict[int, dict] = {}
        self.boxes: dict[int, dict[str, str]] = {}
        self.masked: dict[int, np.ndarray] = {}
        self.answers: dict[int, dict] = {}

    def _name(self, i: int) -> str:
        return self.names[i - 1]

    async def _step(self, step: str, bodies: dict[int, dict], wait: float = 0.0) -> dict[int, Any]:
        async def one(i: int, body: dict):
            m = self.members[i]
            return await m.client.call("POST", f"/v1/secagg/{self.session}/{step}", json=body, idempotent=True,
                                       extra_wait=wait)

        keys = list(bodies)
        answers = await asyncio.gather(*(one(i, bodies[i]) for i in keys), return_exceptions=True)
        return self._settle(step, dict(zip(keys, answers)))

    def _settle(self, step: str, answers: dict[int, Any]) -> dict[int, Any]:
        """The domains that answered ``step``; the others are dropped with their reason."""
        ok = {}
        for i, answer in answers.items():
            if isinstance(answer, DomainError):
                self.dropped[self._name(i)] = f"dropped at the {step} step: {answer.message}"
            elif isinstance(answer, BaseException):
                raise answer
            else:
                ok[i] = answer
        if len(ok) < self.threshold:
            raise NotEnoughDomains(self.threshold, len(ok), self.dropped)
        return ok

    def _advertise_bodies(self) -> dict[int, dict]:
        return {i: {"request_id": m.request_id, "round": m.round, "participants": self.n, "index": i,
                    "threshold": self.threshold} for i, m in self.members.items()}

    def _advertised(self, ok: dict[int, dict]) -> None:
        self.keys = ok

    def _share_bodies(self) -> dict[int, dict]:
        published = {str(i): {key: k.get(key) for key in ("c_pk", "s_pk", "identity", "signature")}
                     for i, k in self.keys.items()}
        return {i: {"keys": published} for i in self.keys}

    def _shared(self, ok: dict[int, dict]) -> None:
        self.boxes = {i: a["shares"] for i, a in ok.items()}

    async def advertise(self) -> None:
        self._advertised(await self._step("keys", self._advertise_bodies()))

    async def share(self) -> None:
        self._shared(await self._step("shares", self._share_bodies()))

    async def collect(self, wait: float = 0.0) -> None:
        """Step 3: each live domain gets the shares sealed for it and answers with its masked input
        (waiting up to ``wait`` seconds for its job, e.g. a training round, to finish)."""
        live = sorted(self.boxes)
        bodies = {i: {"shares": {str(j): self.boxes[j][str(i)] for j in live if j != i}, "wait": wait}
                  for i in live}
        answers = await self._step("masked", bodies, wait)
        self.live = live
        self.masked = {i: np.frombuffer(base64.b64decode(a["masked"]), dtype="<u8").astype(np.uint64)
                       for i, a in answers.items()}

    async def unmask(self) -> np.ndarray:
        from fednb.privacy import fixedpoint, masking, shamir

        survivors = sorted(self.masked)
        self.answers = await self._step("unmask", {i: {"survivors": survivors} for i in survivors})
        salt = self.session.encode()
        length = next(iter(self.masked.values())).size
        total = np.zeros(length, dtype=np.uint64)
        for y in self.masked.values():
            total = total + y
        for j in survivors:  # remove the self masks of the living
            seed = shamir.combine({i: int(a["b_shares"][str(j)], 16) for i, a in self.answers.items()})
            total = total - masking.self_mask(seed.to_bytes(32, "big"), salt, length)
        for k in sorted(set(self.live) - set(survivors)):  # and the pairwise masks of the vanished
            secret = shamir.combine({i: int(a["s_shares"][str(k)], 16) for i, a in self.answers.items()})
            keys = masking.KeyPair.from_secret(secret.to_bytes(32, "big"))
            for i in survivors:
                shared = keys.agree(bytes.fromhex(self.keys[i]["s_pk"]))
                total = total - masking.signed_pair_mask(i, k, shared, salt, length)
        for i in self.live:
            if i not in self.masked:
                self.dropped.setdefault(self._name(i), "vanished after sending its shares; its masks were removed")
        return fixedpoint.decode(total)

    async def run_async(self) -> SecureResult:
        await self.advertise()
        await self.share()
        await self.collect()
        total = await self.unmask()
        return SecureResult(total, [self._name(i) for i in sorted(self.masked)], dict(self.dropped))

    def run(self, timeout: float | None = None) -> SecureResult:
        return run(self.run_async(), timeout)


async def exchange_keys_together(sessions: list[SecureSum]) -> dict[int, NotEnoughDomains]:
    """Steps 1 and 2 of several sessions over the same domains (same members, in the same order), in
    one call per domain and step (``POST /v1/secagg``): how a training run keys its coming rounds at
    once. Returns the sessions (by position) that lost too many domains, with why; the others are
    ready for :meth:`SecureSum.collect`."""
    members = sessions[0].members
    failed: dict[int, NotEnoughDomains] = {}
    steps = (("keys", SecureSum._advertise_bodies, SecureSum._advertised),
             ("shares", SecureSum._share_bodies, SecureSum._shared))
    for step, bodies_of, accept in steps:
        bodies = {k: bodies_of(s) for k, s in enumerate(sessions) if k not in failed}
        sent = {i: [k for k in bodies if i in bodies[k]] for i in members}  # domain -> its sessions, in order

        async def one(i: int) -> dict[int, Any]:
            items = [{"session": sessions[k].session, "step": step, "body": bodies[k][i]} for k in sent[i]]
            answer = await members[i].client.call("POST", "/v1/secagg", json={"steps": items}, idempotent=True)
            results = answer.get("results") if isinstance(answer, dict) else None
            if not isinstance(results, list) or len(results) != len(items):
                raise DomainError(members[i].client.name, "answered the key exchange with a malformed list")
            return {k: r["result"] if "result" in r else
                    DomainError(members[i].client.name, str(r.get("error")), status=r.get("status"))
                    for k, r in zip(sent[i], results)}

        domains = [i for i in members if sent[i]]
        calls = dict(zip(domains, await asyncio.gather(*(one(i) for i in domains), return_exceptions=True)))
        for k, body in bodies.items():
            answers = {i: calls[i] if isinstance(calls[i], BaseException) else calls[i][k] for i in body}
            try:
                accept(sessions[k], sessions[k]._settle(step, answers))
            except NotEnoughDomains as exc:
                failed[k] = exc
    return failed


def secure_sum(members: dict[str, Member], *, threshold: int | None = None) -> SecureResult:
    """Σ of the members' secret vectors; the analyst never sees one of them."""
    return SecureSum(members, threshold=threshold).run()
