"""The domain's side of secure aggregation (Bonawitz et al., "Practical Secure Aggregation for
Privacy-Preserving Machine Learning", CCS 2017, §4, with the signed keys of §6 against a lying analyst).

The analyst relays messages between the domains of a session; each domain runs this trusted code,
and its private keys live only in this process's memory. Four steps, each a call from the analyst:

1. ``keys``: make two X25519 key pairs (one to seal shares for other domains, one to agree masks)
   and publish their public halves, signed with the domain's Ed25519 identity over the session,
   round, step and index (:mod:`fednb.domain.release.trusted_peers`).
2. ``shares``: given everyone's signed public keys, check each signature against the peers the
   owner pinned, pick a self-mask seed b, split the mask key and b with Shamir (threshold t) and
   seal share j for domain j. Keys not signed by a pinned peer stop the session here: an analyst
   posing as the other domains gets nothing sealed for keys it made.
3. ``masked``: given the sealed shares addressed here (their senders are the live set U1), release
   y = x + PRG(b) + Σ_{j∈U1} ±PRG(s_ij) (mod 2⁶⁴), with x this domain's secret vector in fixed point.
   The shares are AES-GCM boxes under keys agreed with signed keys, so only pinned peers made them.
4. ``unmask``: given the domains U2 whose y the analyst received, reveal the b-shares of U2 and the
   mask-key shares of U1 − U2, so the analyst removes the self masks of the living and the pairwise
   masks of the dropped, and learns Σ_{U2} x only. Each input is unmasked in one session only
   (recorded in the store with the audit row), so two sums over different domains can never be
   subtracted to expose it.

Drop-outs are recovered, not re-run: any domain that vanishes after step 2 is unmasked from the
others' shares as long as t remain. (A re-run would make every domain mask the same input twice,
and an analyst who lied about who dropped could subtract the two sums.) What a domain enforces:
at least ``privacy.secure_min_domains`` participants and survivors, t > n/2, itself among the
survivors, one answer per step (it never reveals b and the mask key of the same domain), and for a
``secure_only`` dataset at least ``secure_aggregation.min_peers`` pinned peers in the sum.

Not implemented: §6's consistency check (round 3), where every domain signs the survivor set U2
and reveals shares only for a set that t domains signed. Its aim, that no two honest domains answer
for different survivor sets, is met here by each domain answering once with t > n/2: two disjoint
sets of honest domains, one revealing an input's self-mask shares and the other its mask-key
shares, cannot both reach t. Neither holds against pinned peers that collude with the analyst
(each holds both shares of every other domain's secrets) once t ≤ (n + colluders)/2.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fednb.domain.audit import log as audit
from fednb.domain.release import secure_inputs, trusted_peers
from fednb.domain.review.requests import Conflict, http_status
from fednb.domain.store import jobs as job_rows
from fednb.domain.store import releases as release_rows
from fednb.domain.store import requests as request_rows
from fednb.errors import FednbError, InvalidInput, NotFound

if TYPE_CHECKING:
    from fednb.domain.domain import Domain

SESSION_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
SESSION_TTL = 3600.0
MAX_SESSIONS = 200
MAX_WAIT = 600.0  # seconds the masked step may wait for its job (a training round) to finish
BATCHABLE = ("keys", "shares")  # the steps that need no input yet, and may be sent ahead in one call
MAX_BATCH = 64  # steps in one call (a training run sends one step of each of up to 16 coming rounds)


@dataclass
class Session:
    sid: str
    analyst: str
    request_id: str
    round: int | None
    n: int
    index: int
    threshold: int
    c_keys: Any
    s_keys: Any
    dataset: str = ""
    signed: dict[str, Any] = field(default_factory=dict)  # the keys step's answer, signed once
    created: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    peers: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # j -> (c_pk, s_pk)
    b_seed: bytes | None = None
    shares_out: dict[str, str] | None = None
    own_shares: tuple[int, int] | None = None  # my shares of my own (s_sk, b)
    shares_in: dict[int, tuple[int, int]] = field(default_factory=dict)  # j -> my shares of j's (s_sk, b)
    masked: dict[str, Any] | None = None
    masked_sha256: str | None = None
    live: frozenset[int] | None = None  # U1
    survivors: frozenset[int] | None = None  # U2, once answered


class SecureAggregation:
    """Sessions of one domain, in memory: a restarted domain has dropped out of its open sessions."""

    def __init__(self, domain: Domain):
        self.domain = domain
        self._sessions: dict[tuple[str, str], Session] = {}
        self._lock = threading.Lock()
        self._jobs_changed = threading.Condition()
        self._changes = 0  # bumped by _wake, so a change between a read and the wait is not missed
        domain.subscribe(self._wake)

    def _wake(self) -> None:
        with self._jobs_changed:
            self._changes += 1
            self._jobs_changed.notify_all()

    # -- step 1 --------------------------------------------------------------------------------
    def keys(self, analyst: str, sid: str, body: dict) -> dict:
        from fednb.privacy.masking import KeyPair

        if not isinstance(sid, str) or not SESSION_PATTERN.match(sid):
            raise InvalidInput("a session id is 16-64 letters, digits, '-' or '_'")
        n, index, t = _int(body, "participants"), _int(body, "index"), _int(body, "threshold")
        request_id, number = body.get("request_id"), body.get("round")
        minimum = self.domain.policy.privacy.secure_min_domains
        if n < minimum:
            raise InvalidInput(f"this domain joins secure sums over at least {minimum} domains (its policy); "
                               f"this one has {n}")
        if not 1 <= index <= n:
            raise InvalidInput(f"index {index} is not between 1 and {n}")
        if not (2 * t > n and minimum <= t <= n):
            raise InvalidInput(f"the threshold must be more than half of the {n} domains, at least {minimum}, "
                               f"and at most {n}; got {t}")
        if number is not None and not isinstance(number, int):
            raise InvalidInput("round must be an integer or null")
        dataset = self._check_request(analyst, request_id)
        with self._lock:
            self._expire()
            found = self._sessions.get((analyst, sid))
            if found is not None:
                if (found.request_id, found.round, found.n, found.index, found.threshold) != \
                        (request_id, number, n, index, t):
                    raise Conflict(f"session {sid} already exists with other settings")
                return _public(found)
            if sum(1 for a, _ in self._sessions if a == analyst) >= MAX_SESSIONS:
                raise Conflict(f"you have {MAX_SESSIONS} open secure-aggregation sessions here; finish some first")
            session = Session(sid, analyst, request_id, number, n, index, t, KeyPair(), KeyPair(), dataset)
            self._sign(session)
            self._sessions[(analyst, sid)] = session
        return _public(session)

    def _sign(self, session: Session) -> None:
        identity = self.domain.identity
        message = trusted_peers.key_message(session.sid, session.round, session.n, session.threshold, session.index,
                                            session.c_keys.public, session.s_keys.public)
        session.signed = {"identity": identity.public_key.hex(), "signature": identity.sign(message).hex()}

    # -- step 2 --------------------------------------------------------------------------------
    def shares(self, analyst: str, sid: str, body: dict) -> dict:
        from fednb.privacy import masking, shamir

        session = self._get(analyst, sid)
        with session.lock:
            if session.shares_out is not None:
                return {"shares": session.shares_out}
            peers = trusted_peers.checked_keys(
                body.get("keys"), session=sid, round_=session.round, participants=session.n,
                threshold=session.threshold, own_index=session.index, own_identity=self.domain.identity.public_key,
                own_keys=(session.c_keys.public, session.s_keys.public),
                trusted=trusted_peers.pinned(self.domain.store))
            if len(peers) < session.threshold:
                raise InvalidInput(f"{len(peers)} domains published keys, fewer than the threshold {session.threshold}")
            self._check_peers(session, len(peers))
            session.peers = peers
            session.b_seed = secrets.token_bytes(32)
            points = sorted(peers)
            s_shares = shamir.split(int.from_bytes(session.s_keys.secret(), "big"), points, session.threshold)
            b_shares = shamir.split(int.from_bytes(session.b_seed, "big"), points, session.threshold)
            salt = sid.encode()
            out = {}
            for j in points:
                bundle = json.dumps({"s": format(s_shares[j], "x"), "b": format(b_shares[j], "x")}).encode()
                if j == session.index:
                    session.own_shares = (s_shares[j], b_shares[j])
                    continue
                shared = session.c_keys.agree(peers[j][0])
                out[str(j)] = masking.seal(shared, salt, session.index, j, bundle).hex()
            session.shares_out = out
        return {"shares": out}

    # -- step 3 --------------------------------------------------------------------------------
    def masked(self, analyst: str, sid: str, body: dict) -> dict:
        from cryptography.exceptions import InvalidTag

        from fednb.privacy import fixedpoint, masking

        session = self._get(analyst, sid)
        with session.lock:
            if session.masked is not None:
                return session.masked
            if session.shares_out is None:
                raise Conflict("send the domains' public keys (the shares step) before asking for the masked input")
            sealed = body.get("shares")
            if not isinstance(sealed, dict):
                raise InvalidInput("shares must map each sender's index to the sealed share it sent here")
            received = {}
            salt = sid.encode()
            for j, box in sealed.items():
                j = trusted_peers.peer_index(j, session.n)
                if j not in session.peers or j == session.index:
                    raise InvalidInput(f"domain {j} did not publish keys in this session")
                try:
                    shared = session.c_keys.agree(session.peers[j][0])
                    plain = json.loads(masking.unseal(shared, salt, j, session.index, bytes.fromhex(box)))
                    received[j] = (int(plain["s"], 16), int(plain["b"], 16))
                except (InvalidTag, ValueError, KeyError, TypeError):
                    raise InvalidInput(f"the share from domain {j} could not be opened: it was altered or is not "
                                       "for this domain") from None
            self._check_unused(session)
            live = frozenset(received) | {session.index}
            if len(live) < session.threshold:
                raise InvalidInput(f"only {len(live)} domains are live, fewer than the threshold {session.threshold}")
            x = self._vector(session, wait=_wait(body))
            y = fixedpoint.encode(x, parties=session.n)
            y = y + masking.self_mask(session.b_seed, salt, y.size)
            for j in sorted(live - {session.index}):
                shared = session.s_keys.agree(session.peers[j][1])
                y = y + masking.signed_pair_mask(session.index, j, shared, salt, y.size)
            session.shares_in = {**received, session.index: session.own_shares}
            session.live = live
            data = y.astype("<u8").tobytes()
            session.masked = {"masked": base64.b64encode(data).decode(), "length": int(y.size),
                              "frac_bits": fixedpoint.FRAC_BITS}
            session.masked_sha256 = hashlib.sha256(data).hexdigest()
        return session.masked

    # -- step 4 --------------------------------------------------------------------------------
    def unmask(self, analyst: str, sid: str, body: dict) -> dict:
        session = self._get(analyst, sid)
        raw = body.get("survivors")
        if not isinstance(raw, list):
            raise InvalidInput("survivors must list the indices of the domains whose masked input arrived")
        survivors = frozenset(trusted_peers.peer_index(j, session.n) for j in raw)
        minimum = max(session.threshold, self.domain.policy.privacy.secure_min_domains)
        with session.lock:
            if session.live is None:
                raise Conflict("this domain has not sent its masked input in this session")
            if session.survivors is not None and session.survivors != survivors:
                raise Conflict("this domain already answered for another set of survivors; it answers once")
            repeat = session.survivors is not None
            if session.index not in survivors:
                raise InvalidInput("this domain's masked input is not among the survivors")
            if not survivors <= session.live:
                raise InvalidInput("the survivors must be live domains of this session")
            if len(survivors) < minimum:
                raise InvalidInput(f"{len(survivors)} survivors: the sum would cover fewer than {minimum} domains")
            self._check_peers(session, len(survivors))
            out = {"b_shares": {str(j): format(session.shares_in[j][1], "x") for j in sorted(survivors)},
                   "s_shares": {str(j): format(session.shares_in[j][0], "x") for j in sorted(session.live - survivors)}}
            # One audit row per session, written before the shares leave: this is when the masked input
            # becomes part of a sum the analyst can open (alone it is uniformly random). The same
            # transaction marks the input as used: it never enters a second sum, whose difference
            # with the first would expose it.
            if not repeat:
                with self.domain.store.transaction() as tx:
                    self._check_unused(session, tx)
                    release_rows.mark_unmasked(tx, session.request_id, -1 if session.round is None else session.round,
                                               session.sid)
                    audit.append(tx, session.analyst, "secagg", session.request_id, {
                        "session": session.sid, "step": "unmask", "round": session.round,
                        "masked_sha256": session.masked_sha256, "length": session.masked["length"],
                        "live": sorted(session.live), "survivors": sorted(survivors),
                        "dropped": sorted(session.live - survivors)})
            session.survivors = survivors
        return out

    # -- several key-exchange steps in one call --------------------------------------------------
    def batch(self, analyst: str, steps: Any) -> list[dict]:
        """Run ``steps`` (``keys`` or ``shares`` of any sessions) in order; each answers on its own."""
        if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_BATCH:
            raise InvalidInput(f"steps must be a list of 1 to {MAX_BATCH} key-exchange steps")
        for item in steps:
            if not (isinstance(item, dict) and item.get("step") in BATCHABLE and isinstance(item.get("body"), dict)
                    and isinstance(item.get("session"), str)):
                raise InvalidInput("each step is {\"session\": ID, \"step\": \"keys\" or \"shares\", \"body\": {...}}")
        results = []
        for item in steps:
            try:
                results.append({"result": getattr(self, item["step"])(analyst, item["session"], item["body"])})
            except FednbError as exc:
                results.append({"error": str(exc), "status": http_status(exc)})
        return results

    # -- helpers -------------------------------------------------------------------------------
    def _check_peers(self, session: Session, domains: int) -> None:
        """A secure-only dataset's input joins only sums with at least ``min_peers`` (pinned) peers."""
        rules = self.domain.policy.secure_aggregation
        if rules.secure_only(session.dataset) and domains - 1 < rules.min_peers:
            raise InvalidInput(f"dataset {session.dataset!r} is secure-only here: its sums need at least "
                               f"{rules.min_peers} pinned peer domains, and this one has {domains - 1}")

    def _check_request(self, analyst: str, request_id: Any) -> str:
        if not isinstance(request_id, str):
            raise InvalidInput("request_id names the secure request this session sums")
        row = request_rows.one(self.domain.store.connect(), request_id)
        if row is None or row["analyst"] != analyst:
            raise NotFound(f"no request {request_id!r}")
        args = json.loads(row["args_json"])
        if not (args.get("secure") or args.get("secure_aggregation")):
            raise InvalidInput(f"request {request_id} was not made for secure aggregation")
        return row["dataset"]

    def _vector(self, session: Session, wait: float = 0.0) -> np.ndarray:
        """The job's secret vector; with ``wait``, waits that long for a queued or running job to end
        (so the analyst can ask for the masked input while the round still trains)."""
        deadline = time.monotonic() + wait
        while True:
            with self._jobs_changed:
                seen = self._changes
            job = job_rows.of_round(self.domain.store.connect(), session.request_id, session.round)
            remaining = deadline - time.monotonic()
            if (job is not None and job["status"] in ("done", "failed")) or remaining <= 0:
                break
            with self._jobs_changed:
                if self._changes == seen:
                    self._jobs_changed.wait(remaining)
        what = f"request {session.request_id}" + (f" round {session.round}" if session.round is not None else "")
        if job is None:
            raise NotFound(f"{what} has not been run here")
        if job["status"] != "done" or job["result_blob"] is None:
            raise Conflict(f"{what} is {job['status']} here, with nothing to add to the sum"
                           + (f": {job['reason']}" if job["reason"] else ""))
        return secure_inputs.job_vector(job)

    def _get(self, analyst: str, sid: str) -> Session:
        with self._lock:
            found = self._sessions.get((analyst, sid))
        if found is None:
            raise NotFound(f"no secure-aggregation session {sid!r} here (expired, or this domain restarted)")
        return found

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._sessions.items() if now - s.created > SESSION_TTL]:
            del self._sessions[key]

    def _check_unused(self, session: Session, tx=None) -> None:
        used_in = release_rows.unmasked_in(tx or self.domain.store.connect(), session.request_id,
                                           -1 if session.round is None else session.round)
        if used_in is not None and used_in != session.sid:
            raise Conflict(f"this input was already unmasked in a secure sum (session {used_in}); it enters "
                           "one sum only, so that two sums can never be subtracted to expose it")


def _public(session: Session) -> dict:
    return {"index": session.index, "c_pk": session.c_keys.public.hex(), "s_pk": session.s_keys.public.hex(),
            **session.signed}


def _wait(body: dict) -> float:
    value = body.get("wait", 0)
    if not isinstance(value, (int, float)) or not 0 <= value <= MAX_WAIT:
        raise InvalidInput(f"wait must be between 0 and {MAX_WAIT:g} seconds")
    return float(value)


def _int(body: dict, key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"{key} must be an integer")
    return value
