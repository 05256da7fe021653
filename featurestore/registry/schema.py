"""Registry tables (SQLAlchemy Core, so the same code runs on SQLite and PostgreSQL).

History is append-only: ``revisions`` keeps every applied form of every
object and ``view_versions`` every version of every feature view; ``heads``
points at the current revision. ``projects.serial`` grows with each apply so
a server can tell with one tiny query whether it must reload.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)

SCHEMA_VERSION = 9  # 2: training_sets, 3: materialization_runs, 4: audit, 5: credentials,
# 6: reference profiles and drift statuses, 7: credentials.push_views (push-only keys),
# 8: training_sets.fingerprint and .build (what a rebuild needs), .as_of and .spine,
# 9: credentials.role ('operator': the web UI's keys)

metadata = MetaData()

meta = Table(
    "fs_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

projects = Table(
    "fs_projects",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("serial", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

applies = Table(
    "fs_applies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(128), ForeignKey("fs_projects.name"), nullable=False),
    Column("serial", Integer, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
    Column("applied_by", String(256), nullable=False),
    Column("host", String(256), nullable=False),
    Column("code_version", String(64)),
    Column("summary", Text, nullable=False),
)

revisions = Table(
    "fs_revisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("name", String(256), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("version", Integer),  # feature views only: the data version this revision serves
    Column("spec", Text, nullable=False),
    Column("spec_hash", String(32), nullable=False),
    Column("location", Text),
    Column("apply_id", Integer, ForeignKey("fs_applies.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("fs_revisions_key", "project", "kind", "name", "revision", unique=True),
)

heads = Table(
    "fs_heads",
    metadata,
    Column("project", String(128), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # active | retired
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

view_versions = Table(
    "fs_view_versions",
    metadata,
    Column("project", String(128), primary_key=True),
    Column("view", String(256), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("fingerprint", String(32), nullable=False),
    Column("version_spec", Text, nullable=False),
    Column("spec", Text, nullable=False),  # the view's full spec at its last revision on it
    Column("status", String(16), nullable=False),  # active | retired
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("retired_at", DateTime(timezone=True)),
    Column("apply_id", Integer, ForeignKey("fs_applies.id"), nullable=False),
)

# Lineage: which data trained which model. One row per training-set build.
training_sets = Table(
    "fs_training_sets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(128), nullable=False),
    Column("model", String(256)),
    Column("features", Text, nullable=False),  # ["view@vN:feature", ...]
    Column("entity_fingerprint", String(64), nullable=False),
    Column("entity_rows", Integer, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("engine", String(32), nullable=False),
    Column("output_path", Text),
    Column("offline_manifests", Text, nullable=False),  # {"view@vN": manifest sequence}
    # Content fingerprint of the set (offline/fingerprint.py); null for sets before v8.
    Column("fingerprint", String(64)),
    # How it was joined, for a rebuild: {"timestamp_column", "full_feature_names",
    # "masks", "rules", "entities"}; null for sets before v8 (they cannot be rebuilt).
    Column("build", Text),
    Column("as_of", DateTime(timezone=True)),  # only rows landed by then were read
    Column("spine", Text),  # {"view": "v@vN", "start": iso, "end": iso}: entity rows' source
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(256), nullable=False),
    Index("fs_training_sets_model", "project", "model"),
    # A deleted set's id is never handed out again (audit and drift history name ids); on
    # SQLite registries made before schema 8 the largest id can still be reused.
    sqlite_autoincrement=True,
)

# Lineage: each materialization of one view version (source -> version -> run).
materialization_runs = Table(
    "fs_materialization_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(128), nullable=False),
    Column("view", String(256), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # running | succeeded | failed
    Column("window_start", DateTime(timezone=True)),  # None: from the beginning
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("sources", Text, nullable=False),  # [{"path", "mtime"}, ...]
    Column("rows_read", Integer),
    Column("rows_offline", Integer),
    Column("rows_online", Integer),
    Column("validation", Text),  # {"success", "failed": [...], "report"}
    Column("offline_manifest", Integer),
    Column("code_version", String(64)),
    Column("engine", String(256)),
    Column("error", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("started_by", String(256), nullable=False),
    Index("fs_materialization_runs_view", "project", "view", "version"),
)

# The audit log: a hash chain per project (see registry/audit.py).
audit = Table(
    "fs_audit",
    metadata,
    Column("project", String(128), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("action", String(32), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("subject", Text, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("rule", String(256), nullable=False),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# API keys: one project and one model each (or, push-only, the views it may push: a JSON
# list in push_views, model ''); only a salted hash of the secret.
credentials = Table(
    "fs_credentials",
    metadata,
    Column("project", String(128), primary_key=True),
    Column("key_id", String(32), primary_key=True),
    Column("model", String(256), nullable=False),
    Column("salt", String(64), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_by", String(256)),
    Column("push_views", Text),  # null: a model's key (every key made before v7)
    Column("role", String(16)),  # 'operator', or null: a model's or push key (as before v9)
)

# Drift: the reference profile of each feature of a training set (what the model saw).
profiles = Table(
    "fs_profiles",
    metadata,
    Column("project", String(128), primary_key=True),
    Column("training_set", Integer, primary_key=True),
    Column("feature", String(512), primary_key=True),  # view@vN:feature
    Column("profile", Text, nullable=False),
)

# Drift: each monitor check's status per model and feature ('' for the model), with the
# statistics behind it.
drift_checks = Table(
    "fs_drift_checks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(128), nullable=False),
    Column("model", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False),
    Column("training_set", Integer),
    Column("detail", Text, nullable=False),  # {"features": {...}, "samples": n, ...}
    Index("fs_drift_checks_model", "project", "model", "id"),
)


def migrate(conn: Connection, from_version: int) -> None:
    """Bring a registry of schema ``from_version`` to ``SCHEMA_VERSION`` (``create_all``
    has added the new tables already; this adds new columns to old tables)."""
    if from_version < 7:
        columns = {c["name"] for c in inspect(conn).get_columns("fs_credentials")}
        if "push_views" not in columns:
            conn.execute(text("ALTER TABLE fs_credentials ADD COLUMN push_views TEXT"))
    if from_version < 8:
        columns = {c["name"] for c in inspect(conn).get_columns("fs_training_sets")}
        if "fingerprint" not in columns:
            conn.execute(text("ALTER TABLE fs_training_sets ADD COLUMN fingerprint VARCHAR(64)"))
        if "build" not in columns:
            conn.execute(text("ALTER TABLE fs_training_sets ADD COLUMN build TEXT"))
        if "as_of" not in columns:
            kind = "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql" else "DATETIME"
            conn.execute(text(f"ALTER TABLE fs_training_sets ADD COLUMN as_of {kind}"))
        if "spine" not in columns:
            conn.execute(text("ALTER TABLE fs_training_sets ADD COLUMN spine TEXT"))
    if from_version < 9:
        columns = {c["name"] for c in inspect(conn).get_columns("fs_credentials")}
        if "role" not in columns:
            conn.execute(text("ALTER TABLE fs_credentials ADD COLUMN role VARCHAR(16)"))
