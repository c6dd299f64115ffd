"""Every table of a domain, in one place (SQLAlchemy Core), for SQLite and PostgreSQL alike.

The layout is created and changed only through the migrations in ``store/migrations`` (Alembic):
``0001`` is the layout every domain had before migrations existed, so an old domain folder is
brought up to date in place. A change to a table here needs a new migration beside them.
Types are the portable ones: text, 64-bit float for times and privacy amounts, integers, and
bytes (BLOB on SQLite, BYTEA on PostgreSQL) for safetensors and bitmaps.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

meta = Table(
    "meta", metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

analysts = Table(
    "analysts", metadata,
    Column("name", Text, primary_key=True),
    Column("role", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    CheckConstraint("role IN ('analyst', 'owner')", name="analysts_role"),
)

tokens = Table(  # the SHA-256 of each token; the token itself is never stored
    "tokens", metadata,
    Column("hash", Text, primary_key=True),
    Column("analyst", Text, ForeignKey("analysts.name"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

datasets = Table(
    "datasets", metadata,
    Column("name", Text, primary_key=True),
    Column("file", Text, nullable=False),          # relative to the domain folder
    Column("format", Text, nullable=False),
    Column("meta_json", Text, nullable=False),     # fednb.models.Dataset as the analyst sees it
    Column("rows", Integer, nullable=False),       # exact row count: private, for disclosure checks
    Column("created_at", Float, nullable=False),
    # 'pending' while its files are being moved into place (migration 0002): never served
    Column("state", Text, nullable=False, server_default="ready"),
    # files in the domain folder, or rows that stay in the owner's PostgreSQL or Spark (migration 0003)
    CheckConstraint("format IN ('csv', 'parquet', 'postgresql', 'spark')", name="datasets_format"),
)

requests = Table(
    "requests", metadata,
    Column("id", Text, primary_key=True),
    Column("analyst", Text, nullable=False),
    Column("dataset", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("code", Text),
    Column("args_json", Text, nullable=False),
    Column("code_hash", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("limits_json", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text),
    Column("decided_by", Text),
    Column("created_at", Float, nullable=False),
    Column("decided_at", Float),
    Column("finished_at", Float),
    Column("result_json", Text),
    Column("disclosure_json", Text),
    Column("idempotency_key", Text),
    UniqueConstraint("analyst", "idempotency_key"),
    Index("requests_by_status", "status", "created_at"),
    Index("requests_by_analyst", "analyst", "created_at"),
    Index("requests_by_hash", "analyst", "dataset", "code_hash", "status"),
)

jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", Text, ForeignKey("requests.id"), nullable=False),
    Column("round", Integer),                      # training rounds: 1, 2, ...; NULL for one-off jobs
    Column("lane", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("inputs_json", Text),                   # dynamic inputs (a training round's number and config)
    Column("input_blob", LargeBinary),             # a training round's global weights (safetensors)
    Column("result_json", Text),
    Column("result_blob", LargeBinary),            # safetensors bytes; never pickle
    Column("reason", Text),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    CheckConstraint("lane IN ('builtin', 'sandbox')", name="jobs_lane"),
    CheckConstraint("status IN ('queued', 'running', 'done', 'failed', 'blocked')", name="jobs_status"),
    Index("jobs_queue", "status", "lane", "id"),
    Index("jobs_by_request", "request_id", "round"),
    sqlite_autoincrement=True,
)

audit = Table(  # a hash chain: seq is assigned by the appender, in one writer's transaction
    "audit", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("time", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("object_id", Text),
    Column("payload_json", Text, nullable=False),
    Column("payload_hash", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
)

receipts = Table(
    "receipts", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),  # the audit entry of the release
    Column("request_id", Text, nullable=False),
    Column("receipt_json", Text, nullable=False),
)

published_heads = Table(
    "published_heads", metadata,
    Column("tree_size", Integer, nullable=False),
    Column("root_hash", Text, nullable=False),
    Column("sth_json", Text, nullable=False),
    PrimaryKeyConstraint("tree_size", "root_hash"),
)

privacy_spend = Table(
    "privacy_spend", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("analyst", Text, nullable=False),
    Column("dataset", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("job_id", Integer),
    Column("epsilon", Float, nullable=False),
    Column("delta", Float, nullable=False),
    Column("mechanism", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("privacy_spend_by_analyst", "analyst", "dataset"),
    sqlite_autoincrement=True,
)

released_rows = Table(
    "released_rows", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dataset", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("job_id", Integer),
    Column("rows", Integer, nullable=False),
    Column("rows_sha256", Text, nullable=False),
    Column("cell", Integer, nullable=False, server_default="0"),  # 1: one table cell's rows; 0: a whole result's
    Column("bitmap", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    # the bitmap's container keys and sizes (its portable header): most near-sized sets are told apart
    # by these alone, without reading the bitmap (fednb.domain.release.differencing); NULL before 0004
    Column("container_sizes", LargeBinary),
    Index("released_rows_by_size", "dataset", "rows"),
    Index("released_rows_by_hash", "dataset", "rows_sha256"),
    sqlite_autoincrement=True,
)

secagg_unmasked = Table(
    "secagg_unmasked", metadata,
    Column("request_id", Text, nullable=False),
    Column("round", Integer, nullable=False),       # -1 for a built-in's one job
    Column("session", Text, nullable=False),
    PrimaryKeyConstraint("request_id", "round"),
)

pinned_peers = Table(
    "pinned_peers", metadata,
    Column("public_key", Text, primary_key=True),   # hex of the raw Ed25519 public key
    Column("name", Text, nullable=False),
    Column("url", Text, nullable=False, server_default=""),
    Column("fingerprint", Text, nullable=False),
    Column("pinned_at", Float, nullable=False),
)
