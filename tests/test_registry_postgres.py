"""Registry behaviour against a real PostgreSQL server: the shared-registry path.

The same guarantees as tests/test_registry.py (SQLite): applies are atomic and
idempotent, racing applies serialize on the advisory lock, old versions keep
resolving. Every test gets its own empty database (``postgres_db_url``).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, event, text

from featurestore.devservices import free_port
from featurestore.errors import ApplyError, RegistryUnavailable
from featurestore.registry import Registry
from featurestore.registry.plan import ChangeKind
from featurestore.repo import load_repo
from tests.helpers import change_credit_limit_dtype, scale_repo

if TYPE_CHECKING:
    from tests.postgres import PostgresServer

# Registers the postgres_server / postgres_url / postgres_db_url fixtures (idempotent
# if conftest.py loads the plugin too).
pytest_plugins = ["tests.postgres"]


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: the registry's whole state, for before/after comparisons."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
            return {
                t: sorted((tuple(r) for r in conn.execute(text(f'SELECT * FROM "{t}"'))), key=repr)
                for t in tables
            }
    finally:
        engine.dispose()


@pytest.fixture
def registry(postgres_db_url: str) -> Iterator[Registry]:
    reg = Registry(postgres_db_url)
    yield reg
    reg.close()


def test_apply_then_plan_shows_no_changes(
    registry: Registry, postgres_db_url: str, example_repo: Path
) -> None:
    first = registry.apply(load_repo(example_repo))
    assert first.apply_id is not None
    assert first.serial == 1
    assert {c.change for c in first.plan.pending} == {ChangeKind.NEW}

    plan = registry.plan(load_repo(example_repo))
    assert not plan.has_changes, plan.render()
    assert "No changes" in plan.render()

    before = _dump(postgres_db_url)
    assert set(before) >= {"fs_meta", "fs_projects", "fs_applies", "fs_revisions", "fs_heads"}
    second = registry.apply(load_repo(example_repo))
    assert (second.apply_id, second.serial) == (None, 1)
    assert _dump(postgres_db_url) == before


def test_dtype_change_makes_v2_and_v1_still_resolves(
    registry: Registry, example_repo: Path
) -> None:
    registry.apply(load_repo(example_repo))
    change_credit_limit_dtype(example_repo)
    result = registry.apply(load_repo(example_repo))
    [change] = [c for c in result.plan.pending if c.name == "user_profile"]
    assert (change.change, change.old_version, change.version) == (ChangeKind.NEW_VERSION, 1, 2)

    snapshot = Registry(registry.url).snapshot("payments")  # a fresh reader, as a server is
    assert sorted(snapshot.versions["user_profile"]) == [1, 2]
    assert snapshot.latest_version("user_profile") == 2
    v1 = snapshot.resolve("user_profile@v1:credit_limit")
    assert (v1.version, v1.dtype.name) == (1, "float64")
    latest = snapshot.resolve("user_profile:credit_limit")
    assert (latest.version, latest.dtype.name) == (2, "float32")
    # The server's session time zone is not UTC; the registry still hands back UTC.
    vv = snapshot.versions["user_profile"][2]
    assert vv.created_at.utcoffset() is not None
    assert vv.created_at.tzinfo is UTC
    assert snapshot.view_head("user_profile").updated_at.tzinfo is UTC
    history = registry.history("payments", "feature_view", "user_profile")
    assert [(r.revision, r.version) for r in history] == [(1, 1), (2, 2)]
    assert all(r.created_at.tzinfo is UTC for r in history)


def test_a_reload_reads_only_changes_and_equals_a_full_read(
    registry: Registry, example_repo: Path
) -> None:
    registry.apply(load_repo(example_repo))
    first = registry.snapshot("payments")
    change_credit_limit_dtype(example_repo)
    registry.apply(load_repo(example_repo))
    read = registry.snapshot("payments", previous=first)  # changed rows by (kind, name) IN
    full = registry.snapshot("payments")
    assert (read.serial, read.heads, read.versions) == (full.serial, full.heads, full.versions)
    unchanged = ("feature_view", "merchant_stats")
    assert read.heads[unchanged] is first.heads[unchanged]  # shared, not read again
    assert read.versions["user_profile"][2].created_at.tzinfo is UTC


def test_apply_is_atomic_when_it_fails_midway(
    registry: Registry, postgres_db_url: str, example_repo: Path
) -> None:
    registry.apply(load_repo(example_repo))
    change_credit_limit_dtype(example_repo)
    entities = example_repo / "entities.py"
    entities.write_text(entities.read_text().replace("A card holder.", "A card holder (v2)."))
    before = _dump(postgres_db_url)
    written: list[str] = []

    def fail_on_second(change: object) -> None:
        written.append(str(change))
        if len(written) == 2:
            raise RuntimeError("injected failure mid-apply")

    with pytest.raises(RuntimeError, match="injected failure"):
        registry.apply(load_repo(example_repo), on_change=fail_on_second)
    assert len(written) == 2  # the failure really came after writes had been made
    assert _dump(postgres_db_url) == before
    assert sorted(registry.snapshot("payments").versions["user_profile"]) == [1]
    # The same apply then succeeds as a whole.
    result = registry.apply(load_repo(example_repo))
    assert {c.name for c in result.plan.pending} == {"user", "user_profile"}
    assert result.serial == 2
    assert sorted(registry.snapshot("payments").versions["user_profile"]) == [1, 2]


def _apply_in_process(
    repo: str, url: str, barrier: multiprocessing.synchronize.Barrier
) -> tuple[int | None, int]:
    registry = Registry(url)
    contents = load_repo(repo)
    barrier.wait()
    result = registry.apply(contents)
    registry.close()
    return result.apply_id, result.serial


def test_two_racing_applies_of_the_same_change_make_one_version(
    registry: Registry, postgres_db_url: str, postgres_server: PostgresServer, example_repo: Path
) -> None:
    # A server defaulting to REPEATABLE READ must not matter: a waiting apply has to see
    # what the apply it waited for committed, so the registry pins READ COMMITTED itself.
    database = postgres_db_url.rsplit("/", 1)[1]
    postgres_server.execute(
        f"ALTER DATABASE {database} SET default_transaction_isolation = 'repeatable read'"
    )
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(2) as pool:
        barrier = manager.Barrier(2)
        args = [(str(example_repo), postgres_db_url, barrier)] * 2
        # Round 1, on an empty database: both also race to create the tables.
        first = pool.starmap(_apply_in_process, args)
        change_credit_limit_dtype(example_repo)
        # Round 2: the same new version from two "machines" at once.
        second = pool.starmap(_apply_in_process, args)

    for results, serial in ((first, 1), (second, 2)):
        # One apply wrote; the other ran after it under the lock and found nothing to do.
        applied = [r for r in results if r[0] is not None]
        assert len(applied) == 1, results
        assert sorted(s for _, s in results) == [serial, serial]
    snapshot = registry.snapshot("payments")
    assert sorted(snapshot.versions["user_profile"]) == [1, 2]
    assert snapshot.serial == 2
    applies = _dump(postgres_db_url)["fs_applies"]
    assert len(applies) == 2


def test_a_snapshot_is_one_consistent_read(registry: Registry, example_repo: Path) -> None:
    registry.apply(load_repo(example_repo))
    change_credit_limit_dtype(example_repo)
    writer, contents = Registry(registry.url), load_repo(example_repo)
    applied: list[int | None] = []

    def apply_between_statements(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # The reader has read the serial; another process applies v2 before it reads on.
        if not applied and "fs_projects" in statement:
            applied.append(writer.apply(contents).apply_id)

    event.listen(registry.database.engine, "after_cursor_execute", apply_between_statements)
    try:
        snapshot = registry.snapshot("payments")
    finally:
        event.remove(registry.database.engine, "after_cursor_execute", apply_between_statements)
        writer.close()
    assert len(applied) == 1
    assert applied[0] is not None
    # Wholly the state before that apply, not its serial with the newer heads and versions.
    assert snapshot.serial == 1
    assert sorted(snapshot.versions["user_profile"]) == [1]
    assert snapshot.latest_version("user_profile") == 1
    fresh = registry.snapshot("payments")
    assert (fresh.serial, fresh.latest_version("user_profile")) == (2, 2)


def test_serial_changes_after_an_apply(registry: Registry, example_repo: Path) -> None:
    assert registry.serial("payments") == 0  # also creates the schema on first use
    registry.apply(load_repo(example_repo))
    server = Registry(registry.url)  # another process polling the shared registry
    assert server.serial("payments") == 1
    registry.apply(load_repo(example_repo))  # nothing to do: the serial stays
    assert server.serial("payments") == 1
    path = example_repo / "merchant_stats.py"
    path.write_text(
        path.read_text().replace(
            'owner="payments-analytics@example.com"', 'owner="ml-platform@example.com"'
        )
    )
    registry.apply(load_repo(example_repo))
    assert server.serial("payments") == 2
    assert server.serial("another_project") == 0
    server.close()


def test_unreachable_server_gives_a_clear_error() -> None:
    registry = Registry(f"postgresql+psycopg://nobody:secret@127.0.0.1:{free_port()}/db")
    with pytest.raises(RegistryUnavailable, match=r"featurestore\.yaml") as info:
        registry.serial("payments")
    assert "secret" not in str(info.value)


def test_a_read_only_role_can_serve_from_the_registry(
    registry: Registry, postgres_db_url: str, postgres_server: PostgresServer, example_repo: Path
) -> None:
    """Servers and consumers need only SELECT: reading never writes, not even on first use."""
    registry.apply(load_repo(example_repo))
    database = postgres_db_url.rsplit("/", 1)[1]
    postgres_server.execute("DROP ROLE IF EXISTS fs_reader")
    postgres_server.execute("CREATE ROLE fs_reader LOGIN")
    postgres_server.execute(f"GRANT CONNECT ON DATABASE {database} TO fs_reader")
    postgres_server.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO fs_reader", database)
    reader = Registry(postgres_db_url.replace(f"://{postgres_server.user}@", "://fs_reader@"))
    try:
        assert reader.serial("payments") == 1
        snapshot = reader.snapshot("payments")
        assert str(snapshot.resolve("user_profile:credit_limit")) == "user_profile@v1:credit_limit"
        path = example_repo / "merchant_stats.py"
        path.write_text(path.read_text().replace('"team": "payments"', '"team": "growth"'))
        with pytest.raises(ApplyError, match="rolled back; the registry is unchanged"):
            reader.apply(load_repo(example_repo))
        assert registry.serial("payments") == 1
    finally:
        reader.close()
        postgres_server.execute(f"REVOKE ALL ON DATABASE {database} FROM fs_reader")
        postgres_server.execute(
            "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM fs_reader", database
        )


def test_tenants_apply_without_waiting_for_each_other(postgres_db_url: str, tmp_path: Path) -> None:
    """Each project has its own advisory lock: while tenant A's apply is held mid-write,
    tenant B applies and reads, and a second apply of A waits for the first and then
    finds nothing left to do."""
    import threading

    repo_a = scale_repo(tmp_path / "a", views=5, models=20, project="tenant_a")
    repo_b = scale_repo(tmp_path / "b", views=5, models=20, project="tenant_b")
    holder, other, racer = (Registry(postgres_db_url) for _ in range(3))
    entered, release = threading.Event(), threading.Event()

    def hold(_change: object) -> None:
        entered.set()
        release.wait(60)

    outcomes: dict[str, Any] = {}

    def run(name: str, registry: Registry, repo: Path, **options: Any) -> threading.Thread:
        def target() -> None:
            outcomes[name] = registry.apply(load_repo(repo), **options)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread

    try:
        a = run("a", holder, repo_a, on_change=hold)
        assert entered.wait(30)
        b = run("b", other, repo_b)
        b.join(30)
        assert not b.is_alive(), "tenant B's apply waited for tenant A's lock"
        assert outcomes["b"].apply_id is not None
        assert other.snapshot("tenant_a").serial == 0  # A's apply is not committed yet
        second_a = run("a2", racer, repo_a)
        second_a.join(1.0)
        assert second_a.is_alive()  # the same project's lock still serializes
    finally:
        release.set()
    a.join(30)
    second_a.join(30)
    assert outcomes["a"].apply_id is not None
    assert outcomes["a2"].apply_id is None  # it saw the first apply's result
    assert not outcomes["a2"].plan.has_changes
    for registry in (holder, other, racer):
        registry.close()


def test_training_sets_of_schema_7_migrate_to_as_of_and_spine(postgres_db_url: str) -> None:
    from datetime import UTC, datetime

    from featurestore.registry import TrainingSetRecord

    def record(**extra: Any) -> TrainingSetRecord:
        return TrainingSetRecord(
            "p", None, ("v@v1:f",), "0" * 64, 1, 1, "duckdb", None, {}, **extra
        )

    reg = Registry(postgres_db_url)
    reg.record_training_set(record())
    reg.close()
    engine = create_engine(postgres_db_url)
    with engine.begin() as conn:  # back to schema v7
        conn.execute(text("ALTER TABLE fs_training_sets DROP COLUMN as_of"))
        conn.execute(text("ALTER TABLE fs_training_sets DROP COLUMN spine"))
        conn.execute(text("UPDATE fs_meta SET value = '7' WHERE key = 'schema'"))
    engine.dispose()
    reg = Registry(postgres_db_url)
    try:
        known = datetime(2026, 1, 7, 22, 0, tzinfo=UTC)
        reg.record_training_set(record(as_of=known, spine={"view": "v@v1"}))
        new, old = reg.training_sets("p")
        assert (old.as_of, old.spine) == (None, None)
        assert (new.as_of, new.spine) == (known, {"view": "v@v1"})
    finally:
        reg.close()
