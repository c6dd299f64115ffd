"""A data domain: one folder that is the whole state of an owner's server.

``DIR/policy.toml`` (the owner's rules), the store (requests, jobs, tokens, audit log: ``DIR/domain.db``,
or the PostgreSQL database named in ``DIR/store.url``) and ``DIR/datasets/NAME/`` (private data and
its mock). The CLI, the HTTP app and the tests all act on a
domain through this class.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from fednb.domain.audit import log as audit
from fednb.domain.audit import receipts
from fednb.domain.data import catalog
from fednb.domain.identity import Identity, load_or_create
from fednb.domain.names import check_name, owner_actor
from fednb.domain.review.policy import Policy, load_policy, render_template
from fednb.domain.store import access
from fednb.domain.store import datasets as dataset_rows
from fednb.domain.store.database import Store, check_url, keep_url
from fednb.errors import InvalidInput, NotFound
from fednb.lazy_import import lazy_import
from fednb.locale import N_
from fednb.models import Dataset, Request, RequestIn, Round

# The stages that need pandas, scipy or numpy load on first use: owner commands that only read the
# store (requests, approve, info) start in well under a second.
datasets = lazy_import("fednb.domain.data.datasets")
mock_review = lazy_import("fednb.domain.data.mock_review")
budget = lazy_import("fednb.domain.release.budget")
differencing = lazy_import("fednb.domain.release.differencing")
noisy = lazy_import("fednb.domain.release.noisy")
secure_inputs = lazy_import("fednb.domain.release.secure_inputs")
review = lazy_import("fednb.domain.review.requests")
rounds = lazy_import("fednb.domain.run.rounds")

TOKEN_PREFIX = "fednb_"


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so one SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class Domain:
    """Open an existing domain folder (``Domain.init`` creates one)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).resolve()
        if not (self.path / "policy.toml").exists():
            raise NotFound(f"{self.path} is not a fednb domain (no policy.toml); create one with `fednb domain init`")
        self.policy: Policy = load_policy(self.path / "policy.toml")
        self.store = Store.of_folder(self.path)
        self.store.check()
        catalog.finish_interrupted(self)
        self._listeners: list[Callable[[], None]] = []
        self._identity: Identity | None = None

    @classmethod
    def init(cls, path: str | os.PathLike, name: str, description: str = "", *, store: str | None = None) -> Domain:
        """A new domain folder; ``store`` a PostgreSQL URL to keep its state there instead of SQLite."""
        folder = Path(path)
        check_name("domain name", name)
        if (folder / "policy.toml").exists():
            raise InvalidInput(f"{folder} is already a fednb domain")
        url = check_url(store) if store else None
        if url and Store(url).revision() is not None:
            raise InvalidInput(f"{Store(url).describe()} already holds a domain's store; give an empty database")
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        (folder / "datasets").mkdir(exist_ok=True)
        (folder / "datasets").chmod(0o755)
        if url:
            keep_url(folder, url)
        store = Store.of_folder(folder)
        store.create()
        if store.path is not None:
            store.path.chmod(0o600)
        (folder / "policy.toml").write_text(render_template(name, description), encoding="utf-8")
        with store.transaction() as tx:
            audit.append(tx, owner_actor(), "init", name, {"description": description})
        store.close()
        return cls(folder)

    @property
    def name(self) -> str:
        return self.policy.domain.name

    @property
    def identity(self) -> Identity:
        """The domain's Ed25519 key pair (``DIR/identity.key``), made on first use."""
        if self._identity is None:
            self._identity = load_or_create(self.path)
        return self._identity

    def close(self) -> None:
        self.store.close()

    # -- change notification (the HTTP app wakes its long-polls; the runner wakes its workers) ----
    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    # -- datasets (adding one and its bounds: fednb.domain.data.catalog) ----------------------------
    def add_dataset(self, file: str | os.PathLike, name: str, description: str = "") -> Dataset:
        """Register a CSV or Parquet file as dataset ``name`` and write its mock (all or nothing)."""
        return catalog.add(self, file, name, description)

    def set_bounds(self, dataset: str, column: str, lo: float, hi: float) -> Dataset:
        """Public clamping bounds for noisy sums, means and variances of a numeric column (audited)."""
        return catalog.set_bounds(self, dataset, column, lo, hi)

    def bounds(self, dataset: str) -> dict[str, list[float]]:
        return {c.name: c.bounds for c in self.dataset(dataset).columns if c.bounds is not None}

    def budget(self, analyst: str, dataset: str) -> budget.Budget:
        """What ``analyst`` has spent of, and has left in, their privacy budget on ``dataset``."""
        self.dataset(dataset)
        return budget.status(self.store.connect(), self.policy, analyst, dataset)

    def budgets(self) -> list[dict]:
        """Every analyst's spending, per dataset, with their allowance (the owner's view)."""
        rows = budget.ledger(self.store.connect())
        for r in rows:
            allowance = self.policy.privacy.allowance(r["analyst"], r["dataset"])
            r["budget_epsilon"], r["budget_delta"] = allowance.epsilon, allowance.delta
        return rows

    def datasets(self) -> list[Dataset]:
        return [Dataset.model_validate_json(m) for m in dataset_rows.all_meta_json(self.store.connect())]

    def dataset(self, name: str) -> Dataset:
        found = dataset_rows.meta_json(self.store.connect(), name)
        if found is None:
            raise NotFound(N_("this domain has no dataset {dataset!r}").format(dataset=name))
        return Dataset.model_validate_json(found)

    def data_path(self, name: str) -> Path:
        found = dataset_rows.file(self.store.connect(), name)
        if found is None:
            raise NotFound(N_("this domain has no dataset {dataset!r}").format(dataset=name))
        return self.path / found

    def row_count(self, name: str) -> int:
        """The exact number of rows (private: for disclosure checks, never shown to analysts)."""
        found = dataset_rows.row_count(self.store.connect(), name)
        if found is None:
            raise NotFound(N_("this domain has no dataset {dataset!r}").format(dataset=name))
        return found

    def mock_path(self, name: str) -> Path:
        return self.data_path(name).with_name(datasets.MOCK_FILE)

    def mock_report(self, name: str) -> dict:
        """The full utility and risk report of the dataset's mock (the owner's view)."""
        return mock_review.read_report(self.mock_path(name))

    def approve_mock(self, name: str, reason: str = "", *, actor: str | None = None) -> Dataset:
        """Serve the dataset's current mock to analysts (recorded in the audit log)."""
        meta = mock_review.approve(self.store, name, actor or owner_actor(), reason)
        self.changed()
        return meta

    def engine(self, name: str):
        """The engine over dataset ``name``'s rows (:mod:`fednb.domain.data.engines`); close it after use."""
        from fednb.domain.data.engines.factory import open_engine

        return open_engine(self.data_path(name).parent, self.policy.engine)

    def load(self, name: str, columns: list[str] | None = None):
        """The private DataFrame, or only ``columns`` of it (domain side only)."""
        engine = self.engine(name)
        try:
            return engine.frame(columns)
        finally:
            engine.close()

    def levels(self, name: str) -> dict[str, list]:
        return {c.name: c.levels for c in self.dataset(name).columns if c.levels is not None}

    # -- analysts and tokens ---------------------------------------------------------------------
    def invite(self, analyst: str, *, role: str = "analyst", token: str | None = None) -> str:
        """Create a token for ``analyst``; it is shown once and only its hash is kept.

        ``token`` registers one made elsewhere (the same token on each of a teacher's domains).
        """
        return self.invite_many({analyst: token}, role=role)[analyst]

    def invite_many(self, tokens: dict[str, str | None], *, role: str = "analyst") -> dict[str, str]:
        """Invite several people in one transaction (all or none): ``{name: token or None}`` to
        ``{name: token}``, a new token where none was given (a class of students, say)."""
        if role not in ("analyst", "owner"):
            raise InvalidInput("role must be 'analyst' or 'owner'")
        for analyst, token in tokens.items():
            check_name("analyst name", analyst)
            if token is not None and not re.match(rf"^{TOKEN_PREFIX}[A-Za-z0-9_\-]{{32,100}}$", token):
                raise InvalidInput(f"the token for {analyst!r} must be '{TOKEN_PREFIX}' followed by at least 32 "
                                   "random URL-safe characters")
        made = {analyst: token or new_token() for analyst, token in tokens.items()}
        if len({hash_token(t) for t in made.values()}) < len(made):
            raise InvalidInput("the same token is given to two people; each needs their own")
        with self.store.transaction() as tx:
            for analyst, token in made.items():
                existing = access.role_of(tx, analyst)
                if existing is None:
                    access.add_person(tx, analyst, role)
                elif existing != role:
                    raise InvalidInput(f"{analyst!r} is already invited as {existing}")
                if access.token_known(tx, hash_token(token)):
                    raise InvalidInput(f"the token for {analyst!r} is already registered here")
                access.add_token(tx, hash_token(token), analyst)
                audit.append(tx, owner_actor(), "invite", analyst, {"role": role})
        return made

    def revoke(self, analyst: str) -> int:
        with self.store.transaction() as tx:
            n = access.revoke_tokens(tx, analyst)
            if n == 0:
                raise NotFound(f"{analyst!r} has no active token")
            audit.append(tx, owner_actor(), "revoke", analyst, {"tokens": n})
        return n

    def authenticate(self, token: str) -> tuple[str, str] | None:
        """(analyst, role) for a valid, unrevoked token; None otherwise."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        return access.holder(self.store.connect(), hash_token(token))

    def token_state(self, token: str) -> str:
        """'valid', 'revoked' or 'unknown' (for the message a refused caller gets)."""
        revoked = access.token_revoked(self.store.connect(), hash_token(token or ""))
        if revoked is None:
            return "unknown"
        return "revoked" if revoked else "valid"

    def connect(self, analyst: str) -> None:
        with self.store.transaction() as tx:
            audit.append(tx, analyst, "connect", self.name, {})

    # -- requests ------------------------------------------------------------------------------
    def receive(self, analyst: str, req: RequestIn) -> tuple[Request, bool]:
        self._check_columns(req)
        self._check_privacy(analyst, req)
        result = review.accept(self.store, self.policy, analyst, req)
        self.changed()
        return result

    def _check_columns(self, req: RequestIn) -> None:
        if req.kind != "builtin":
            return
        meta = self.dataset(req.dataset)
        names = {c.name for c in meta.columns}
        used = [req.args.get(k) for k in ("column", "row", "col")]
        used += [c.get("column") for c in req.args.get("where", []) if isinstance(c, dict)]
        missing = sorted({u for u in used if isinstance(u, str) and u not in names})
        if missing:
            from fednb.domain.data.engines.sql import suggestion

            raise InvalidInput("; ".join(N_("dataset {dataset!r} has no column {column!r}{hint}").format(
                dataset=req.dataset, column=m, hint=suggestion(m, sorted(names))) for m in missing))
        self._check_levels(meta, req.args.get("where", []))

    @staticmethod
    def _check_levels(meta: Dataset, where: list) -> None:
        """A filter value that is a near miss of a public level is a typo, said at submission."""
        from fednb.domain.data.engines.sql import Schema, check_levels

        schema = Schema({c.name: c.dtype for c in meta.columns},
                        {c.name: c.levels for c in meta.columns if c.levels is not None})
        for cond in where if isinstance(where, list) else []:
            if isinstance(cond, dict) and isinstance(cond.get("column"), str):
                check_levels(schema, cond["column"], str(cond.get("op")), cond.get("value"))

    def _check_privacy(self, analyst: str, req: RequestIn) -> None:
        """Noise and secure sums the policy cannot give are refused at submission, not after a wait."""
        dp = req.args.get("dp") if req.kind == "training" else None
        if isinstance(dp, dict) and isinstance(dp.get("epsilon"), (int, float)):
            left = self.budget(analyst, req.dataset).remaining_epsilon
            if dp["epsilon"] > left + budget.SLACK:
                raise InvalidInput(N_("this training would spend epsilon {epsilon:g}, but your privacy budget on "
                                      "{dataset!r} has {left:.4g} left; ask for less, or ask the owner for more").format(
                    epsilon=dp["epsilon"], dataset=req.dataset, left=left))
        if req.kind != "builtin":
            return
        if req.args.get("secure"):
            secure_inputs.check_builtin(req.name)
        if noisy.wanted(req.name, req.args, self.policy):
            noisy.plan(req.name, req.args, self.policy, analyst, req.dataset)
            noisy.check(req.name, req.args, self.bounds(req.dataset))

    def requests(self, *, analyst: str | None = None, status: str | None = None, limit: int = 200,
                 offset: int = 0) -> list[Request]:
        return review.listing(self.store, analyst=analyst, status=status, limit=limit, offset=offset)

    def request(self, request_id: str, *, analyst: str | None = None) -> Request:
        return receipts.attach(self.store.connect(), review.get(self.store, request_id, analyst=analyst))

    def resolve(self, prefix: str) -> str:
        return review.resolve_id(self.store, prefix)

    def approve(self, request_id: str, reason: str = "", *, actor: str | None = None) -> Request:
        req = review.decide(self.store, request_id, approve=True, actor=actor or owner_actor(), reason=reason)
        self.changed()
        return req

    def approve_same_code(self, request_id: str, reason: str = "", *, actor: str | None = None) -> list[Request]:
        """Approve ``request_id`` and every other pending request on the same dataset with the same
        code hash, whoever sent it: the owner read that exact code once (a class submitting one
        exercise). Each approval is its own audit entry."""
        return self._decide_same_code(request_id, lambda rid: self.approve(rid, reason, actor=actor))

    def deny_same_code(self, request_id: str, reason: str, *, actor: str | None = None) -> list[Request]:
        """Deny ``request_id`` and every other pending request with the same code hash (see
        :meth:`approve_same_code`), each with ``reason``."""
        return self._decide_same_code(request_id, lambda rid: self.deny(rid, reason, actor=actor))

    def _decide_same_code(self, request_id: str, decide: Callable[[str], Request]) -> list[Request]:
        first = self.request(request_id)
        done = [decide(first.id)]
        for r in self.requests(status="pending", limit=100_000):
            if r.code_hash == first.code_hash and r.dataset == first.dataset and r.id != first.id:
                try:
                    done.append(decide(r.id))
                except review.Conflict:  # decided meanwhile (another owner session, say)
                    continue
        return done

    def deny(self, request_id: str, reason: str, *, actor: str | None = None) -> Request:
        req = review.decide(self.store, request_id, approve=False, actor=actor or owner_actor(), reason=reason)
        self.changed()
        return req

    # -- rounds (training, iterative built-ins) -----------------------------------------------------------------------
    def receive_round(self, analyst: str, request_id: str, body: bytes) -> Round:
        result = rounds.accept_round(self.store, self.policy, analyst, request_id, body)
        self.changed()
        return result

    def round(self, request_id: str, number: int, *, analyst: str | None = None) -> Round:
        return rounds.get_round(self.store, request_id, number, analyst=analyst)

    def round_weights(self, request_id: str, number: int, *, analyst: str | None = None) -> bytes:
        return rounds.round_weights(self.store, request_id, number, analyst=analyst)

    def finish(self, analyst: str, request_id: str) -> Request:
        result = rounds.finish(self.store, request_id, analyst)
        self.changed()
        return result

    # -- audit ---------------------------------------------------------------------------------
    def audit_entries(self, since: int = 0, limit: int | None = None):
        return audit.entries(self.store.connect(), since=since, limit=limit)

    def verify_audit(self, expected_head: str | None = None) -> audit.Verification:
        return audit.verify(self.store.connect(), expected_head=expected_head)

    def remove(self) -> None:
        """Delete the whole domain folder (tests and demos)."""
        self.close()
        shutil.rmtree(self.path)
