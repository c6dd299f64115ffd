"""The peer domains an owner pinned for secure aggregation, and the signed key messages checked against them.

Secure aggregation with an honest analyst needs no identities (Bonawitz et al., "Practical Secure
Aggregation for Privacy-Preserving Machine Learning", CCS 2017, §4). Against an analyst who may lie,
it does (§6, the malicious-server variant): the analyst relays every public key, so it could hand a
domain keys it made itself, play all the other "domains", open the shares sealed for them and
unmask that domain's input. So each domain signs its key message with its long-term Ed25519
identity (:mod:`fednb.domain.identity`), and a domain seals shares only for keys signed by peers its
owner pinned.

Owners pin each other from a roster they exchange, a TOML file with one ``[[peer]]`` per domain::

    [[peer]]
    name = "hospital-a"
    url = "https://fednb.hospital-a.example"
    public_key = "9f0c…"          # 64 hex digits: the raw Ed25519 public key
    fingerprint = "SHA256:…"       # what `fednb domain info` prints, compared out of band

``fednb domain trust DIR ROSTER`` replaces the pinned set with the roster's other entries, in one
transaction with its audit row. What a domain signs binds the session, the round, the step and the
session's shape (participants, threshold, the signer's index), so a message cannot be replayed into
another session, round or position.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fednb.domain.audit import log as audit
from fednb.domain.identity import fingerprint, verify
from fednb.domain.store import releases as release_rows
from fednb.errors import InvalidInput

PROTOCOL = "fednb secure aggregation key message v1"
MAX_PEERS = 1000


@dataclass(frozen=True)
class Peer:
    name: str
    url: str
    public_key: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "url": self.url, "public_key": self.public_key.hex(),
                "fingerprint": self.fingerprint}


def read_roster(path: Path) -> list[Peer]:
    """The roster's entries, checked: a readable error names the entry at fault."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"no roster file {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path} is not a TOML roster: {exc}") from None
    entries = raw.get("peer")
    if not isinstance(entries, list) or not entries or len(entries) > MAX_PEERS:
        raise InvalidInput(f"{path} must list the federation's domains as [[peer]] entries (1 to {MAX_PEERS})")
    peers: list[Peer] = []
    for k, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise InvalidInput(f"{path}: peer {k} is not a table")
        unknown = sorted(set(entry) - {"name", "url", "public_key", "fingerprint"})
        if unknown:
            raise InvalidInput(f"{path}: peer {k} has unknown settings {unknown}")
        name, url, key = entry.get("name"), entry.get("url", ""), entry.get("public_key")
        if not isinstance(name, str) or not name.strip() or not isinstance(url, str):
            raise InvalidInput(f"{path}: peer {k} needs a name (and a url, if any, as text)")
        try:
            public_key = bytes.fromhex(key)
        except (TypeError, ValueError):
            public_key = b""
        if len(public_key) != 32:
            raise InvalidInput(f"{path}: peer {name!r}: public_key must be 64 hex digits (an Ed25519 public key)")
        peer = Peer(name.strip(), url, public_key)
        if "fingerprint" in entry and entry["fingerprint"] != peer.fingerprint:
            raise InvalidInput(f"{path}: peer {name!r}: the fingerprint {entry['fingerprint']!r} is not that of "
                               f"its public key ({peer.fingerprint}); the roster was altered or mistyped")
        peers.append(peer)
    for attr in ("name", "public_key"):
        values = [getattr(p, attr) for p in peers]
        if len(set(values)) != len(values):
            raise InvalidInput(f"{path}: two peers share a {attr.replace('_', ' ')}")
    return peers


def roster_entry(name: str, url: str, public_key: bytes) -> str:
    """This domain's own ``[[peer]]`` entry, to send to the other owners."""
    peer = Peer(name, url, public_key)
    return "\n".join(["[[peer]]"] + [f"{k} = {json.dumps(v)}" for k, v in peer.as_dict().items()]) + "\n"


def pin(store, own_key: bytes, peers: list[Peer], actor: str = "owner") -> list[Peer]:
    """Replace the pinned peers with ``peers`` (less this domain itself); audited in the same transaction."""
    others = [p for p in peers if p.public_key != own_key]
    with store.transaction() as tx:
        before = release_rows.replace_pinned_peers(
            tx, [(p.public_key.hex(), p.name, p.url, p.fingerprint) for p in others])
        audit.append(tx, actor, "secagg", None, {
            "step": "trust", "peers": [{"name": p.name, "fingerprint": p.fingerprint} for p in others],
            "removed": sorted(before - {p.fingerprint for p in others})})
    return others


def pinned(store) -> dict[bytes, Peer]:
    """{public key: peer} as pinned now (empty for a domain whose owner pinned none)."""
    return {bytes.fromhex(r["public_key"]): Peer(r["name"], r["url"], bytes.fromhex(r["public_key"]))
            for r in release_rows.pinned_peers(store.connect())}


def key_message(session: str, round_: int | None, participants: int, threshold: int, index: int,
                c_pk: bytes, s_pk: bytes) -> bytes:
    """The bytes a domain signs for its ``keys`` step: everything that places the keys."""
    return json.dumps({"protocol": PROTOCOL, "step": "keys", "session": session, "round": round_,
                       "participants": participants, "threshold": threshold, "index": index,
                       "c_pk": c_pk.hex(), "s_pk": s_pk.hex()}, sort_keys=True, separators=(",", ":")).encode()


def checked_keys(keys: Any, *, session: str, round_: int | None, participants: int, threshold: int,
                 own_index: int, own_identity: bytes, own_keys: tuple[bytes, bytes],
                 trusted: dict[bytes, Peer]) -> dict[int, tuple[bytes, bytes]]:
    """{index: (c_pk, s_pk)} of the relayed key messages, each signed by a distinct pinned peer for
    this session, round and index; refuses (``InvalidInput``) the whole list otherwise."""
    if not isinstance(keys, dict):
        raise InvalidInput("keys must map each domain's index to its signed public keys")
    out: dict[int, tuple[bytes, bytes]] = {}
    signers: set[bytes] = set()
    for raw_index, entry in keys.items():
        j = peer_index(raw_index, participants)
        try:
            c_pk, s_pk = bytes.fromhex(entry["c_pk"]), bytes.fromhex(entry["s_pk"])
            signer, signature = bytes.fromhex(entry["identity"]), bytes.fromhex(entry["signature"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InvalidInput(f"the keys of domain {j} are not signed hex strings (c_pk, s_pk, identity, "
                               "signature): this domain masks only toward signed keys") from None
        if len(c_pk) != 32 or len(s_pk) != 32:
            raise InvalidInput(f"the public keys of domain {j} are not X25519 keys")
        if j == own_index:
            if (c_pk, s_pk) != own_keys or signer != own_identity:
                raise InvalidInput("the key list does not carry this domain's own keys unchanged")
        elif signer not in trusted:
            raise InvalidInput(f"domain {j}'s keys are signed by {fingerprint(signer)}, which this domain's owner has "
                               "not pinned (`fednb domain trust`): it masks only toward pinned peers")
        if signer in signers:
            raise InvalidInput(f"domain {j}'s keys are signed by a domain that already holds another index")
        message = key_message(session, round_, participants, threshold, j, c_pk, s_pk)
        if not verify(signer, message, signature):
            raise InvalidInput(f"the signature on domain {j}'s keys does not hold for this session, round and index "
                               "(altered, or replayed from another session)")
        signers.add(signer)
        out[j] = (c_pk, s_pk)
    if own_index not in out:
        raise InvalidInput("the key list does not carry this domain's own keys unchanged")
    return out


def peer_index(value: Any, n: int) -> int:
    """A 1-based domain index of a session of ``n``, from the analyst's JSON (never trusted)."""
    try:
        j = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{value!r} is not a domain index") from None
    if not 1 <= j <= n:
        raise InvalidInput(f"domain index {j} is not between 1 and {n}")
    return j


def pin_each_other(folders: list[Path], url: str = "") -> None:
    """Make the domains in ``folders`` pin one another: what their owners do by exchanging a roster
    and running ``fednb domain trust``, for local federations (the demo, tests, benchmarks)."""
    from fednb.domain.domain import Domain

    domains = [Domain(f) for f in folders]
    try:
        roster = [Peer(d.name, url, d.identity.public_key) for d in domains]
        for d in domains:
            pin(d.store, d.identity.public_key, roster)
    finally:
        for d in domains:
            d.close()
