"""A data domain: one folder that is the whole state of an owner's server.

``DIR/policy.toml`` (the owner's rules), ``DIR/domain.db`` (requests, jobs, tokens, audit log) and
``DIR/datasets/NAME/`` (private data and its mock). The CLI, the HTTP app and the tests all act on a
domain through this class.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from fednb.domain.audit import log as audit
from fednb.domain.audit import receipts
from fednb.domain.data import datasets, mock_review
from fednb.domain.identity import Identity, load_or_create
from fednb.domain.release import budget, differencing, noisy, secure_inputs
from fednb.domain.review import requests as review
from fednb.domain.review.policy import Policy, load_policy, render_template
from fednb.domain.run import rounds
from fednb.domain.store.sqlite import Store
from fednb.errors import InvalidInput, NotFound
from fednb.models import NAME_PATTERN, Dataset, Request, RequestIn, Round

TOKEN_PREFIX = "fednb_"


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so one SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _check_name(what: str, name: str) -> str:
    if not re.match(NAME_PATTERN, name or ""):
        raise InvalidInput(f"{what} {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def owner_actor() -> str:
    try:
        return f"owner:{getpass.getuser()}"
    except Exception:  # no login name in some containers
        return "owner"


class Domain:
    """Open an existing domain folder (``Domain.init`` creates one)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).resolve()
        if not (self.path / "policy.toml").exists():
            raise NotFound(f"{self.path} is not a fednb domain (no policy.toml); create one with `fednb domain init`")
        self.policy: Policy = load_policy(self.path / "policy.toml")
        self.store = Store(self.path / "domain.db")
        self.store.check()
        budget.ensure(self.store.connect())  # domains made before privacy budgets get the table here
        differencing.ensure(self.store.connect())  # and before the differencing defence, this one
        self._listeners: list[Callable[[], None]] = []
        self._identity: Identity | None = None

    @classmethod
    def init(cls, path: str | os.PathLike, name: str, description: str = "") -> Domain:
        folder = Path(path)
        _check_name("domain name", name)
        if (folder / "policy.toml").exists():
            raise InvalidInput(f"{folder} is already a fednb domain")
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        (folder / "datasets").mkdir(exist_ok=True)
        (folder / "datasets").chmod(0o755)
        (folder / "policy.toml").write_text(render_template(name, description), encoding="utf-8")
        store = Store(folder / "domain.db")
        store.create()
        (folder / "domain.db").chmod(0o600)
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

    # -- datasets ------------------------------------------------------------------------------
    def add_dataset(self, file: str | os.PathLike, name: str, description: str = "") -> Dataset:
        _check_name("dataset name", name)
        source = Path(file)
        if not source.is_file():
            raise InvalidInput(f"{source} is not a file")
        meta, data_file, rows = datasets.register(self.path, source, name, description, self.policy,
                                            seed=int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
        kept = self.bounds(name) if self.store.query_one("SELECT 1 FROM datasets WHERE name = ?", (name,)) else {}
        for c in meta.columns:  # re-registering a dataset keeps the owner's bounds
            if c.name in kept and c.kind in ("numeric", "integer", "boolean"):
                c.bounds = kept[c.name]
        with self.store.transaction() as tx:
            tx.execute("INSERT OR REPLACE INTO datasets (name, file, format, meta_json, rows, created_at)"
                       " VALUES (?, ?, 'parquet', ?, ?, ?)",
                       (name, str(data_file.relative_to(self.path)), meta.model_dump_json(), rows, time.time()))
            audit.append(tx, owner_actor(), "dataset", name,
                         {"rows": meta.rows, "columns": [c.name for c in meta.columns], "description": description,
                          "mock": {k: meta.mock[k] for k in ("tier", "status", "report_sha256")} if meta.mock else None})
        return meta

    def set_bounds(self, dataset: str, column: str, lo: float, hi: float) -> Dataset:
        """The owner's clamping bounds for noisy sums, means and variances of a numeric column.

        They are public (analysts see them in the metadata), so choose them from what the column can
        mean (ages 0..120), never from the private values; changing them is recorded in the audit log.
        """
        import math

        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise InvalidInput(f"bounds must be finite numbers with LO < HI; got {lo} and {hi}")
        with self.store.transaction() as tx:
            row = tx.execute("SELECT meta_json FROM datasets WHERE name = ?", (dataset,)).fetchone()
            if row is None:
                raise NotFound(f"this domain has no dataset {dataset!r}")
            meta = Dataset.model_validate_json(row["meta_json"])
            found = [c for c in meta.columns if c.name == column]
            if not found:
                raise InvalidInput(f"dataset {dataset!r} has no column {column!r}; it has {[c.name for c in meta.columns]}")
            if found[0].kind not in ("numeric", "integer", "boolean"):
                raise InvalidInput(f"column {column!r} is {found[0].kind}; bounds are for numeric columns")
            found[0].bounds = [float(lo), float(hi)]
            tx.execute("UPDATE datasets SET meta_json = ? WHERE name = ?", (meta.model_dump_json(), dataset))
            audit.append(tx, owner_actor(), "bounds", dataset, {"column": column, "bounds": [float(lo), float(hi)]})
        return meta

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
        return [Dataset.model_validate_json(r["meta_json"])
                for r in self.store.query("SELECT meta_json FROM datasets ORDER BY name")]

    def dataset(self, name: str) -> Dataset:
        row = self.store.query_one("SELECT meta_json FROM datasets WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"this domain has no dataset {name!r}")
        return Dataset.model_validate_json(row["meta_json"])

    def data_path(self, name: str) -> Path:
        row = self.store.query_one("SELECT file FROM datasets WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"this domain has no dataset {name!r}")
        return self.path / row["file"]

    def row_count(self, name: str) -> int:
        """The exact number of rows (private: for disclosure checks, never shown to analysts)."""
        row = self.store.query_one("SELECT rows FROM datasets WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"this domain has no dataset {name!r}")
        return int(row["rows"])

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
        from fednb.domain.data.engines.duckdb import open_engine

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
            _check_name("analyst name", analyst)
            if token is not None and not re.match(rf"^{TOKEN_PREFIX}[A-Za-z0-9_\-]{{32,100}}$", token):
                raise InvalidInput(f"the token for {analyst!r} must be '{TOKEN_PREFIX}' followed by at least 32 "
                                   "random URL-safe characters")
        made = {analyst: token or new_token() for analyst, token in tokens.items()}
        if len({hash_token(t) for t in made.values()}) < len(made):
            raise InvalidInput("the same token is given to two people; each needs their own")
        with self.store.transaction() as tx:
            for analyst, token in made.items():
                row = tx.execute("SELECT role FROM analysts WHERE name = ?", (analyst,)).fetchone()
                if row is None:
                    tx.execute("INSERT INTO analysts (name, role, created_at) VALUES (?, ?, ?)",
                               (analyst, role, time.time()))
                elif row["role"] != role:
                    raise InvalidInput(f"{analyst!r} is already invited as {row['role']}")
                if tx.execute("SELECT 1 FROM tokens WHERE hash = ?", (hash_token(token),)).fetchone():
                    raise InvalidInput(f"the token for {analyst!r} is already registered here")
                tx.execute("INSERT INTO tokens (hash, analyst, created_at) VALUES (?, ?, ?)",
                           (hash_token(token), analyst, time.time()))
                audit.append(tx, owner_actor(), "invite", analyst, {"role": role})
        return made

    def revoke(self, analyst: str) -> int:
        with self.store.transaction() as tx:
            n = tx.execute("UPDATE tokens SET revoked_at = ? WHERE analyst = ? AND revoked_at IS NULL",
                           (time.time(), analyst)).rowcount
            if n == 0:
                raise NotFound(f"{analyst!r} has no active token")
            audit.append(tx, owner_actor(), "revoke", analyst, {"tokens": n})
        return n

    def authenticate(self, token: str) -> tuple[str, str] | None:
        """(analyst, role) for a valid, unrevoked token; None otherwise."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        row = self.store.query_one(
            "SELECT a.name, a.role FROM tokens t JOIN analysts a ON a.name = t.analyst"
            " WHERE t.hash = ? AND t.revoked_at IS NULL", (hash_token(token),))
        return None if row is None else (row["name"], row["role"])

    def token_state(self, token: str) -> str:
        """'valid', 'revoked' or 'unknown' (for the message a refused caller gets)."""
        row = self.store.query_one("SELECT revoked_at FROM tokens WHERE hash = ?", (hash_token(token or ""),))
        if row is None:
            return "unknown"
        return "revoked" if row["revoked_at"] else "valid"

    def connect(self, analyst: str) -> None:
        with self.store.transaction() as tx:
            audit.append(tx, analyst, "connect", self.name, {})

    # -- requests ------------------------------------------------------------------------------
    def submit(self, analyst: str, req: RequestIn) -> tuple[Request, bool]:
        self._check_columns(req)
        self._check_privacy(analyst, req)
        result = review.submit(self.store, self.policy, analyst, req)
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

            raise InvalidInput("; ".join(f"dataset {req.dataset!r} has no column {m!r}{suggestion(m, sorted(names))}"
                                         for m in missing))
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
                raise InvalidInput(f"this training would spend epsilon {dp['epsilon']:g}, but your privacy budget on "
                                   f"{req.dataset!r} has {left:.4g} left; ask for less, or ask the owner for more")
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
    def submit_round(self, analyst: str, request_id: str, body: bytes) -> Round:
        result = rounds.submit_round(self.store, self.policy, analyst, request_id, body)
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
