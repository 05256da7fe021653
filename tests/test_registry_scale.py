"""The registry at scale, by counting rather than timing: the statements an apply issues
and the rows it writes do not grow with the number of objects in the repo."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event

from featurestore.registry import Registry
from featurestore.registry.change_writer import CHUNK
from featurestore.registry.plan import ChangeKind
from featurestore.repo import load_repo
from tests.helpers import scale_repo

SIZES = {"small": (20, 200), "moderate": (1_000, 10_000)}  # views, models


@contextmanager
def counted(registry: Registry) -> Iterator[list[str]]:
    """Every statement the registry sends (a multi-row executemany counts once)."""
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    event.listen(registry.database.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(registry.database.engine, "before_cursor_execute", count)


def rows(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        conn.close()


def apply_counts(root: Path, views: int, models: int) -> dict[str, object]:
    scale_repo(root, views=views, models=models)
    registry = Registry(f"sqlite:///{root}/data/registry.db")
    registry.database.ensure_schema()  # creating the tables is not the apply's
    try:
        with counted(registry) as first:
            result = registry.apply(load_repo(root))
        assert len(result.plan.pending) == 2 * views + 2 * models + 1  # + the entity
        before = rows(root / "data" / "registry.db")
        with counted(registry) as again:
            assert registry.apply(load_repo(root)).apply_id is None
        assert rows(root / "data" / "registry.db") == before  # nothing written
        scale_repo(root, views=views, models=models, changed_view=views // 2)
        with counted(registry) as one_change:
            result = registry.apply(load_repo(root))
        pending = result.plan.pending
        assert [(c.kind, c.name, c.change, c.version) for c in pending] == [
            ("feature_view", f"view_{views // 2}", ChangeKind.NEW_VERSION, 2)
        ]
        after = rows(root / "data" / "registry.db")
        grown = {t: after[t] - before[t] for t in after if after[t] != before[t]}
        # One revision, one view version, one apply and its audit record: nothing else.
        assert grown == {"fs_revisions": 1, "fs_view_versions": 1, "fs_applies": 1, "fs_audit": 1}
        return {"first": first, "again": again, "one_change": one_change}
    finally:
        registry.close()


def test_an_applys_statements_do_not_grow_with_the_repo(tmp_path: Path) -> None:
    small = apply_counts(tmp_path / "small", *SIZES["small"])
    moderate = apply_counts(tmp_path / "moderate", *SIZES["moderate"])
    # 50x the objects, the same statements: reads in bulk, writes one statement per table.
    assert moderate["again"] == small["again"]
    assert moderate["one_change"] == small["one_change"]
    # A first apply writes one statement per table and chunk of CHUNK changes.
    for (views, models), counts in ((SIZES["small"], small), (SIZES["moderate"], moderate)):
        chunks = -(-(2 * views + 2 * models + 1) // CHUNK)
        assert len(counts["first"]) <= 15 + 6 * chunks, counts["first"]  # type: ignore[arg-type]
    assert len(small["again"]) <= 6, small["again"]  # type: ignore[arg-type]
    assert "INSERT" not in small["again"]  # type: ignore[operator]
    assert "UPDATE" not in small["again"]  # type: ignore[operator]
    assert len(small["one_change"]) <= 20, small["one_change"]  # type: ignore[arg-type]


def test_a_no_change_apply_takes_no_write_lock(tmp_path: Path) -> None:
    """SQLite has one writer at a time: an apply with nothing to write must not queue
    behind another project's (or anyone's) write transaction."""
    root = scale_repo(tmp_path / "repo", views=5, models=20)
    registry = Registry(f"sqlite:///{root}/data/registry.db", engine=None)
    registry.apply(load_repo(root))
    writer = sqlite3.connect(root / "data" / "registry.db", isolation_level=None, timeout=0)
    try:
        writer.execute("BEGIN IMMEDIATE")  # someone else is writing
        result = registry.apply(load_repo(root))  # would wait out the 60 s busy timeout
        assert result.apply_id is None
        assert not result.plan.has_changes
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        registry.close()
