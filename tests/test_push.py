"""The push API, in-process and over HTTP, against a real Redis and Parquet offline store."""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore
from featurestore.errors import (
    AccessDeniedError,
    AuthenticationError,
    EntityInputError,
    FeatureViewNotFound,
    PushRejected,
    PushSpoolError,
    RepoConfigError,
    RequestTooLargeError,
)
from featurestore.offline.table import OfflineTable
from featurestore.offline.writer import table_path
from featurestore.registry.schema import SCHEMA_VERSION
from tests.helpers import ONLINE_REPO, write_repo
from tests.test_serving import Server, start_server, stop_server

pytestmark = pytest.mark.services

PUSH_DEFS = """
    from datetime import timedelta

    from featurestore import FeatureView, Field, Float64, Int64, KafkaSource, UnixTimestamp
    from featurestore import expect_between

    from defs import user

    clicks = KafkaSource(
        name="clicks",
        topic="clicks",
        timestamp_field="ts",
        schema=[
            Field(name="user_id", dtype=Int64),
            Field(name="ts", dtype=UnixTimestamp),
            Field(name="score", dtype=Float64),
        ],
        allowed_lateness=timedelta(minutes=10),
        max_future_skew=timedelta(minutes=1),
        max_event_bytes=2000,
    )
    live_scores = FeatureView(
        name="live_scores",
        entities=[user],
        source=clicks,
        schema=[Field(name="score", dtype=Float64)],
        ttl=timedelta(days=1),
        expectations=[expect_between("score", 0, 1)],
    )
"""


def push_repo(path: Path, redis_url: str, project: str) -> Path:
    config = (
        f"project: {project}\nregistry: data/registry.db\nonline_store:\n  redis_url: {redis_url}\n"
    )
    repo = write_repo(path, {**ONLINE_REPO, "push_defs.py": PUSH_DEFS, "featurestore.yaml": config})
    with FeatureStore(repo) as store:
        store.apply()
    return repo


@pytest.fixture
def repo(tmp_path: Path, services: Any, request: pytest.FixtureRequest) -> Path:
    return push_repo(tmp_path / "repo", services.redis_url, f"push_{request.node.name[-20:]}")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def stats_row(user: int, t: datetime, amount: float, **extra: Any) -> dict[str, Any]:
    return {
        "user_id": user,
        "event_timestamp": t,
        "avg_amount": amount,
        "txn_count": 3,
        "country": "DE",
        **extra,
    }


def online_amounts(store: FeatureStore, users: list[int]) -> list[Any]:
    response = store.get_online_features(
        [{"user_id": u} for u in users], features=["user_stats:avg_amount"]
    )
    return response.to_dict()["avg_amount"]


def offline_files(repo: Path, project: str, view: str, version: int = 1) -> int:
    root = table_path(repo / "data" / "offline", project, view, version)
    return len(OfflineTable(root).manifest().files)


# -- in-process --------------------------------------------------------------------


def test_push_online_is_read_back_by_a_lookup(repo: Path) -> None:
    t = now() - timedelta(minutes=1)
    with FeatureStore(repo) as store:
        result = store.push("user_stats", [stats_row(1, t, 12.5), stats_row(2, t, 7.0)])
        assert (result.rows, result.online_written, result.offline_buffered) == (2, 2, 0)
        assert online_amounts(store, [1, 2, 3]) == [12.5, 7.0, None]


def test_push_takes_a_dict_of_columns(repo: Path) -> None:
    t = now()
    with FeatureStore(repo) as store:
        store.push(
            "user_stats",
            {
                "user_id": [1, 2],
                "event_timestamp": [t.isoformat(), t.timestamp()],
                "avg_amount": [1.0, 2],
                "txn_count": [1, 2],
                "country": ["DE", None],
            },
        )
        assert online_amounts(store, [1, 2]) == [1.0, 2.0]


def test_push_takes_the_arrow_table_write_online_takes(repo: Path) -> None:
    t = now()
    table = pa.table(
        {
            "user_id": pa.array([5, 6], pa.int64()),
            "event_timestamp": pa.array([t, t], pa.timestamp("us", tz="UTC")),
            "avg_amount": pa.array([0.5, None], pa.float64()),
            "txn_count": pa.array([1, 2], pa.int64()),
            "country": pa.array(["DE", "FR"]),
        }
    )
    with FeatureStore(repo) as store:
        assert store.push("user_stats", table).online_written == 2
        assert online_amounts(store, [5, 6]) == [0.5, None]


def test_out_of_order_pushes_never_regress_the_online_value(repo: Path) -> None:
    t = now() - timedelta(minutes=5)
    with FeatureStore(repo) as store:
        store.push("user_stats", [stats_row(1, t, 5.0)])
        older = store.push("user_stats", [stats_row(1, t - timedelta(seconds=30), 1.0)])
        assert (older.online_written, older.online_skipped_older) == (0, 1)
        assert online_amounts(store, [1]) == [5.0]
        newer = store.push("user_stats", [stats_row(1, t + timedelta(seconds=1), 6.0)])
        assert newer.online_written == 1
        assert online_amounts(store, [1]) == [6.0]


def test_push_offline_lands_and_is_read_by_training_data(repo: Path) -> None:
    t = now() - timedelta(minutes=10)
    with FeatureStore(repo) as store:
        result = store.push(
            "user_stats", [stats_row(1, t, 3.0), stats_row(2, t, 4.0)], to="online_and_offline"
        )
        assert result.offline_buffered == 2
        store.pusher.flush()
        entities = pa.table(
            {
                "user_id": pa.array([1, 2, 1], pa.int64()),
                "event_timestamp": pa.array(
                    [t + timedelta(seconds=1), t + timedelta(seconds=1), t - timedelta(seconds=1)],
                    pa.timestamp("us", tz="UTC"),
                ),
            }
        )
        training = store.get_training_data(entities, features=["user_stats:avg_amount"])
        assert training.table.column("avg_amount").to_pylist() == [3.0, 4.0, None]
        assert online_amounts(store, [1, 2]) == [3.0, 4.0]


def test_push_offline_only_writes_nothing_online(repo: Path) -> None:
    t = now()
    with FeatureStore(repo) as store:
        result = store.push("user_stats", [stats_row(9, t, 3.0)], to="offline")
        assert (result.online_written, result.offline_buffered) == (0, 1)
        assert online_amounts(store, [9]) == [None]
    # close() landed it
    assert offline_files(repo, store.project, "user_stats") == 1


def test_bad_rows_are_each_named_and_nothing_is_written(repo: Path) -> None:
    t = now()
    rows = [
        stats_row(1, t, 1.0),  # good
        {"event_timestamp": t, "avg_amount": 1.0},  # no key
        stats_row(3, t, "many"),  # wrong dtype
        stats_row(4, t + timedelta(hours=1), 1.0),  # too far in the future
        stats_row(5, t, math.nan),  # NaN
        stats_row(6, t, 1.0, txn_count=[1, 2]),  # nested
        stats_row(7, t, 1.0, colour="red"),  # unknown field
        stats_row(8, None, 1.0),  # no event time
        stats_row(9, t, 1.0, txn_count=True),  # a bool is not an int
        ["not", "a", "row"],
    ]
    with FeatureStore(repo) as store:
        with pytest.raises(PushRejected) as caught:
            store.push("user_stats", rows, to="online_and_offline")
        errors = {(e["row"], e["field"]): e["reason"] for e in caught.value.errors}
        assert set(errors) == {
            (1, "user_id"),
            (2, "avg_amount"),
            (3, "event_timestamp"),
            (4, "avg_amount"),
            (5, "txn_count"),
            (6, "colour"),
            (7, "event_timestamp"),
            (8, "txn_count"),
            (9, None),
        }
        assert "missing" in errors[(1, "user_id")]
        assert "expected a number, got a string" in errors[(2, "avg_amount")]
        assert errors[(3, "event_timestamp")].startswith("future:")
        assert "nan" in errors[(4, "avg_amount")]
        assert "list" in errors[(5, "txn_count")]
        assert "unknown field" in errors[(6, "colour")]
        assert "9 of 10 rows are bad" in str(caught.value)
        assert "nothing was written" in str(caught.value)
        assert online_amounts(store, [1]) == [None]  # the good row was not written either
        assert store.pusher.buffer.pending() == 0


def test_stream_source_bounds_and_expectations_apply(repo: Path) -> None:
    t = now()
    with FeatureStore(repo) as store:
        ok = store.push("live_scores", [{"user_id": 1, "event_timestamp": t, "score": 0.5}])
        assert ok.online_written == 1
        with pytest.raises(PushRejected) as caught:
            store.push(
                "live_scores",
                [
                    {"user_id": 1, "event_timestamp": t - timedelta(minutes=11), "score": 0.5},
                    {"user_id": 1, "event_timestamp": t + timedelta(minutes=2), "score": 0.5},
                    {"user_id": 1, "event_timestamp": t, "score": 1.5},
                ],
            )
        reasons = [e["reason"] for e in caught.value.errors]
        assert reasons[0].startswith("late:")
        assert "allowed_lateness" in reasons[0]
        assert reasons[1].startswith("future:")
        assert "0:01:00" in reasons[1]
        assert reasons[2].startswith("expectation failed")


def test_oversized_input_is_refused(repo: Path) -> None:
    t = now()
    with FeatureStore(repo) as store:
        with pytest.raises(RequestTooLargeError, match="at most 10,000"):
            store.push("user_stats", [stats_row(1, t, 1.0)] * 10_001)
        with pytest.raises(PushRejected, match="too large"):
            store.push("user_stats", [stats_row(1, t, 1.0, country="x" * 2_000_000)])


def test_unknown_view_target_and_offline_only_view(repo: Path) -> None:
    t = now()
    with FeatureStore(repo) as store:
        with pytest.raises(FeatureViewNotFound, match="user_stats"):
            store.push("user_stat", [stats_row(1, t, 1.0)])
        with pytest.raises(EntityInputError, match="Did you mean 'online'"):
            store.push("user_stats", [stats_row(1, t, 1.0)], to="onlin")
        with pytest.raises(EntityInputError, match="offline only"):
            store.push("offline_only", [{"user_id": 1, "event_timestamp": t, "label_rate": 1.0}])
        with pytest.raises(EntityInputError, match="no rows"):
            store.push("user_stats", [])


def test_many_small_pushes_make_few_files(repo: Path) -> None:
    t = now() - timedelta(minutes=1)
    with FeatureStore(repo) as store:
        for i in range(500):
            store.push("user_stats", [stats_row(i, t, float(i))], to="offline")
        assert store.pusher.buffer.pending() == 500
        store.pusher.flush()
        entities = pa.table(
            {
                "user_id": pa.array(range(500), pa.int64()),
                "event_timestamp": pa.array([t] * 500, pa.timestamp("us", tz="UTC")),
            }
        )
        got = store.get_training_data(entities, features=["user_stats:avg_amount"]).table
        assert sorted(got.column("avg_amount").to_pylist()) == [float(i) for i in range(500)]
        project = store.project
    assert offline_files(repo, project, "user_stats") == 1


def test_pushes_are_recorded_as_one_run_per_interval(repo: Path) -> None:
    t = now()
    with FeatureStore(repo) as store:
        for i in range(5):
            store.push("user_stats", [stats_row(i, t, 1.0)], to="online_and_offline")
        store.pusher.flush()
        runs = [r for r in store.registry.runs.records(store.project, "user_stats")]
        assert len(runs) in (1, 2)  # an interval may have ended between two pushes
        assert sum(r.rows_read or 0 for r in runs) == 5
        assert sum(r.rows_online or 0 for r in runs) == 5
        assert sum(r.rows_offline or 0 for r in runs) == 5
        assert {r.engine for r in runs} == {"push"}
        assert sum(s["pushes"] for r in runs for s in r.sources) == 5
        # push runs are no batch watermark
        assert store.registry.runs.watermark(store.project, "user_stats", 1) is None


# -- over HTTP -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory, services: Any) -> Iterator[Server]:
    """``featurestore serve`` on a push repo; ``key`` is fraud_model's (a lookup key)."""
    repo = push_repo(tmp_path_factory.mktemp("push") / "repo", services.redis_url, "push_http")
    server = start_server(repo)
    yield server
    stop_server(server)


def push_key(repo: Path, *views: str) -> str:
    with FeatureStore(repo) as store:
        return store.create_push_credential(list(views), description="tests")[1]


def post_push(server: Server, body: Any, key: str | None) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{server.url}/v1/push", content=content, headers=headers, timeout=10)


def lookup(server: Server, users: list[int], key: str) -> httpx.Response:
    body = {"features": ["user_stats:avg_amount"], "entities": [{"user_id": u} for u in users]}
    return httpx.post(
        f"{server.url}/v1/features",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def wait_for_key(server: Server, key: str, view: str = "user_stats") -> None:
    """Servers load new keys within their refresh interval (0.2 s here)."""
    for _ in range(50):
        r = post_push(server, {"view": view, "rows": []}, key)
        if r.status_code != 401:
            return
        time.sleep(0.1)
    raise AssertionError(f"the server never accepted the new key: {r.text}")


def json_row(user: int, t: datetime, amount: Any) -> dict[str, Any]:
    return {
        "user_id": user,
        "event_timestamp": t.isoformat(),
        "avg_amount": amount,
        "txn_count": 1,
        "country": "FR",
    }


def test_http_push_lands_online_and_a_lookup_reads_it(http: Server) -> None:
    key = push_key(http.repo, "user_stats")
    wait_for_key(http, key)
    t = now() - timedelta(seconds=30)
    r = post_push(http, {"view": "user_stats", "rows": [json_row(101, t, 9.5)]}, key)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "view": "user_stats",
        "version": 1,
        "to": "online",
        "rows": 1,
        "online": {"written": 1, "skipped_older": 0, "skipped_expired": 0},
        "offline": {"buffered": 0},
    }
    older = post_push(
        http, {"view": "user_stats", "rows": [json_row(101, t - timedelta(minutes=1), 1.0)]}, key
    )
    assert older.json()["online"] == {"written": 0, "skipped_older": 1, "skipped_expired": 0}
    got = lookup(http, [101], http.key or "")
    assert got.status_code == 200, got.text
    assert got.json()["results"][0]["values"] == [9.5]


def test_http_bad_rows_answer_422_naming_row_and_field(http: Server) -> None:
    key = push_key(http.repo, "user_stats")
    wait_for_key(http, key)
    t = now()
    rows = [
        json_row(1, t, 1.0),
        json_row(2, t, {"nested": 1}),
        {**json_row(3, t, 1.0), "colour": "red"},
        {k: v for k, v in json_row(4, t, 1.0).items() if k != "user_id"},
        json_row(5, t + timedelta(days=1), 1.0),
    ]
    r = post_push(http, {"view": "user_stats", "rows": rows, "to": "online_and_offline"}, key)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "PushRejected"
    assert body["rows"] == 5
    assert [(e["row"], e["field"]) for e in body["errors"]] == [
        (1, "avg_amount"),
        (2, "colour"),
        (3, "user_id"),
        (4, "event_timestamp"),
    ]
    assert lookup(http, [1], http.key or "").json()["results"][0]["values"] == [None]


def test_http_request_errors(http: Server) -> None:
    key = push_key(http.repo, "user_stats")
    wait_for_key(http, key)
    row = json_row(1, now(), 1.0)
    unknown = post_push(http, {"view": "user_stat", "rows": [row]}, key)
    assert unknown.status_code == 403  # the key may not push a view it does not name
    assert "may push only user_stats" in unknown.json()["detail"]
    missing = post_push(http, {"view": "user_stats"}, key)
    assert missing.status_code == 422
    assert 'no "rows"' in missing.json()["detail"]
    extra = post_push(http, {"view": "user_stats", "rows": [row], "too": "online"}, key)
    assert extra.status_code == 422
    assert "Did you mean 'to'" in extra.json()["detail"]
    assert post_push(http, b"[1, 2", key).status_code == 400
    assert post_push(http, b"[1, 2]", key).status_code == 400
    big = post_push(http, {"view": "user_stats", "rows": [row] * 20_000}, key)
    assert big.status_code == 413, big.text  # past the 1 MiB body limit
    assert "limit" in big.json()["detail"]


def test_http_unknown_version_is_404(http: Server) -> None:
    key = push_key(http.repo, "user_stats", "live_scores")
    wait_for_key(http, key)
    # a key may name only views that exist; a view it names that is then pushed with a bad
    # version is a 404
    r = post_push(http, {"view": "live_scores", "rows": [], "version": 7}, key)
    assert r.status_code == 404, r.text
    assert "no version v7" in r.json()["detail"]


def test_http_push_key_scope(http: Server) -> None:
    key = push_key(http.repo, "live_scores")
    wait_for_key(http, key, "live_scores")
    row = json_row(1, now(), 1.0)
    other = post_push(http, {"view": "user_stats", "rows": [row]}, key)
    assert other.status_code == 403
    assert "may push only live_scores" in other.json()["detail"]
    read = lookup(http, [1], key)
    assert read.status_code == 403
    assert "push-only key" in read.json()["detail"]
    drift = httpx.get(
        f"{http.url}/v1/drift/fraud_model", headers={"Authorization": f"Bearer {key}"}
    )
    assert drift.status_code == 403
    model_push = post_push(http, {"view": "user_stats", "rows": [row]}, http.key)
    assert model_push.status_code == 403
    assert "lookup keys cannot push" in model_push.json()["detail"]
    assert post_push(http, {"view": "user_stats", "rows": [row]}, None).status_code == 401
    with FeatureStore(http.repo) as store:
        store.revoke_credential(key)
    for _ in range(50):
        revoked = post_push(http, {"view": "live_scores", "rows": []}, key)
        if revoked.status_code == 401:
            break
        time.sleep(0.1)
    assert revoked.status_code == 401
    assert "revoked" in revoked.json()["detail"]
    # (audit records of pushes are coalesced per minute: the restart test reads them)


def test_openapi_documents_push(http: Server) -> None:
    spec = httpx.get(f"{http.url}/openapi.json").json()
    op = spec["paths"]["/v1/push"]["post"]
    assert {"200", "401", "403", "413", "422"} <= set(op["responses"])
    assert op["security"] == [{"bearer": []}, {"apiKey": []}]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"view", "rows", "to", "version"}


def offline_rows(repo: Path, project: str, view: str) -> list[dict[str, Any]]:
    table = OfflineTable(table_path(repo / "data" / "offline", project, view, 1))
    import pyarrow.parquet as pq

    parts = [pq.read_table(table.root / f.path) for f in table.manifest().files]
    return pa.concat_tables(parts).to_pylist() if parts else []


def test_http_buffered_rows_land_on_a_clean_stop_and_restart(tmp_path: Path, services: Any) -> None:
    repo = push_repo(tmp_path / "repo", services.redis_url, "push_restart")
    # a buffer far longer than 100 pushes take on a slow machine: only the stop lands rows
    config = repo / "featurestore.yaml"
    config.write_text(config.read_text() + "push:\n  offline_flush_seconds: 600\n")
    key = push_key(repo, "user_stats")
    with FeatureStore(repo) as store:
        _, model_key = store.create_credential("fraud_model")
    t = now() - timedelta(minutes=1)
    produced = 0
    for round_ in range(2):
        server = start_server(repo, "--workers", "2", model=None)
        try:
            for i in range(100):
                user = round_ * 1000 + i
                body = {"view": "user_stats", "rows": [json_row(user, t, float(user))]}
                r = post_push(server, {**body, "to": "offline"}, key)
                assert r.status_code == 200, r.text
                assert r.json()["offline"] == {"buffered": 1}
                produced += 1
            refused = post_push(server, {"view": "user_stats", "rows": []}, model_key)
            assert refused.status_code == 403
        finally:
            stop_server(server)  # within the 600 s buffer: nothing landed before this
        landed = offline_rows(repo, "push_restart", "user_stats")
        assert len(landed) == produced
    assert sorted(r["user_id"] for r in landed) == [*range(100), *range(1000, 1100)]
    assert all(r["avg_amount"] == float(r["user_id"]) for r in landed)
    # 200 single-row pushes: one file per worker and stop (2 workers x 2 runs), not 200
    assert offline_files(repo, "push_restart", "user_stats") <= 4
    with FeatureStore(repo) as store:
        runs = store.registry.runs.records(store.project, "user_stats")
        assert sum(r.rows_offline or 0 for r in runs) == 200
        assert sum(r.rows_read or 0 for r in runs) == 200
        assert len(runs) <= 2 * 2 * 2  # per worker and run, at most 2 minutes each
        audit = [r for r in store.registry.audit.records(store.project) if r.action == "push"]
    allowed = [r for r in audit if r.decision == "allow"]
    assert sum(r.detail["count"] for r in allowed) == 200
    assert {r.actor for r in allowed} == {f"fsk_{key.split('_')[1]}"}
    denied = [r for r in audit if r.decision == "deny"]
    assert sum(r.detail["count"] for r in denied) == 2  # one per run
    assert {r.actor for r in denied} == {f"fsk_{model_key.split('_')[1]}"}
    assert "lookup keys cannot push" in denied[0].detail["examples"][0]["message"]


def test_cli_creates_lists_and_revokes_push_keys(repo: Path) -> None:
    from typer.testing import CliRunner

    from featurestore.cli import app

    runner = CliRunner()
    made = runner.invoke(
        app,
        [
            "credentials",
            "create",
            "--push",
            "user_stats,live_scores",
            "--repo",
            str(repo),
            "--json",
        ],
    )
    assert made.exit_code == 0, made.output
    created = orjson.loads(made.stdout)
    assert created["push_views"] == ["user_stats", "live_scores"]
    assert created["model"] is None
    listed = runner.invoke(app, ["credentials", "list", "--repo", str(repo)])
    assert f"fsk_{created['key_id']}  push:user_stats,live_scores" in listed.stdout
    both = runner.invoke(
        app,
        [
            "credentials",
            "create",
            "--push",
            "user_stats",
            "--model",
            "fraud_model",
            "--repo",
            str(repo),
        ],
    )
    assert both.exit_code != 0
    assert "exactly one of --model" in both.output
    typo = runner.invoke(app, ["credentials", "create", "--push", "user_stat", "--repo", str(repo)])
    assert typo.exit_code != 0
    assert "user_stats" in typo.output  # did you mean
    revoked = runner.invoke(app, ["credentials", "revoke", created["key_id"], "--repo", str(repo)])
    assert "push user_stats,live_scores" in revoked.stdout
    with FeatureStore(repo) as store:
        (found,) = [c for c in store.registry.credentials.records(store.project) if c.is_push]
        assert found.revoked_at is not None


def test_old_credential_records_stay_readable_after_the_migration(repo: Path) -> None:
    with FeatureStore(repo) as store:
        old, key = store.create_credential("fraud_model")
        project = store.project
    db = repo / "data" / "registry.db"
    with sqlite3.connect(db) as conn:  # back to schema v6: no push_views column
        conn.execute("ALTER TABLE fs_credentials DROP COLUMN push_views")
        conn.execute("UPDATE fs_meta SET value = '6' WHERE key = 'schema'")
    with FeatureStore(repo) as store:
        (found,) = store.registry.credentials.records(project)
        assert (found.key_id, found.model, found.push_views) == (old.key_id, "fraud_model", ())
        assert store.get_online_features(
            [{"user_id": 1, "merchant_id": "m"}], api_key=key, model="fraud_model"
        )
        _, push = store.create_push_credential(["user_stats"])
        kinds = sorted(c.is_push for c in store.registry.credentials.records(project))
        assert kinds == [False, True]
    with sqlite3.connect(db) as conn:
        current = conn.execute("SELECT value FROM fs_meta WHERE key = 'schema'").fetchone()
        assert current == (str(SCHEMA_VERSION),)  # migrated to the newest schema
    del push


def test_keyring_refuses_push_keys_for_reads_and_model_keys_for_pushes(repo: Path) -> None:
    with FeatureStore(repo) as store:
        _, model_key = store.create_credential("fraud_model")
        _, push = store.create_push_credential(["user_stats"])
        keys = store.catalog().keys
        at = datetime.now(UTC)
        assert keys.authenticate_push(push, "user_stats", at).push_views == ("user_stats",)
        with pytest.raises(AccessDeniedError, match="reads nothing"):
            keys.authenticate(push, at)
        with pytest.raises(AccessDeniedError, match="lookup keys cannot push"):
            keys.authenticate_push(model_key, "user_stats", at)
        with pytest.raises(AccessDeniedError, match="may push only user_stats"):
            keys.authenticate_push(push, "merchant_stats", at)
        with pytest.raises(AccessDeniedError, match="push-only"):
            store.get_online_features([{"user_id": 1}], model="fraud_model", api_key=push)
        store.revoke_credential(push)
        with pytest.raises(AuthenticationError, match="revoked"):
            store.catalog().keys.authenticate_push(push, "user_stats", at)


def test_the_buffer_lands_by_itself_after_its_interval(repo: Path) -> None:
    from featurestore.push.pusher import build_pusher

    t = now() - timedelta(minutes=1)
    with FeatureStore(repo) as store:
        pusher = build_pusher(store, store.snapshot, buffer_seconds=0.2, tick_seconds=0.05)
        try:
            for i in range(3):
                pusher.push("user_stats", [stats_row(i, t, 1.0)], to="offline")
            assert pusher.buffer.pending() == 3
            for _ in range(100):
                if pusher.buffer.pending() == 0:
                    break
                time.sleep(0.05)
            assert pusher.buffer.pending() == 0
            assert offline_files(repo, store.project, "user_stats") == 1
        finally:
            pusher.close()


def test_http_rows_a_crashed_server_buffered_land_when_it_restarts(
    tmp_path: Path, services: Any
) -> None:
    repo = push_repo(tmp_path / "repo", services.redis_url, "push_crash")
    key = push_key(repo, "user_stats")
    server = start_server(repo, model="fraud_model")
    t = now() - timedelta(minutes=1)
    try:
        for user in (7, 8):
            body = {
                "view": "user_stats",
                "rows": [json_row(user, t, float(user))],
                "to": "online_and_offline",
            }
            assert post_push(server, body, key).status_code == 200
    finally:
        for child in psutil.Process(server.proc.pid).children(recursive=True):
            child.kill()
        server.proc.kill()
        server.proc.wait(10)
    assert offline_rows(repo, "push_crash", "user_stats") == []  # it was in the buffer
    with FeatureStore(repo) as store:
        assert online_amounts(store, [7, 8]) == [7.0, 8.0]  # online it had landed
    stop_server(start_server(repo, model=None))  # a new server lands the spool at start
    landed = offline_rows(repo, "push_crash", "user_stats")
    assert sorted((r["user_id"], r["avg_amount"]) for r in landed) == [(7, 7.0), (8, 8.0)]
    assert list((repo / ".featurestore" / "push-spool").rglob("*.spool")) == []


def test_a_spool_left_by_a_crash_is_landed_once_and_a_cut_record_skipped(repo: Path) -> None:
    t = now() - timedelta(minutes=1)
    script = f"""
import os
from datetime import datetime
from featurestore import FeatureStore
store = FeatureStore({str(repo)!r})
t = datetime.fromisoformat({t.isoformat()!r})
for user in (1, 2):
    row = {{"user_id": user, "event_timestamp": t, "avg_amount": float(user)}}
    store.push("user_stats", [row], to="offline")
os._exit(1)  # a crash: no close, no landing
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert done.returncode == 1, done.stderr.decode()
    (spooled,) = list((repo / ".featurestore" / "push-spool").rglob("*.spool"))
    with spooled.open("ab") as f:
        f.write(b"\x00\x00\x10\x00partial")  # a write the crash cut short
    project = FeatureStore(repo).project
    assert offline_rows(repo, project, "user_stats") == []
    with FeatureStore(repo) as store:
        assert store.pusher.buffer.pending() == 0  # recovered when the pusher was made
    landed = offline_rows(repo, project, "user_stats")
    assert sorted((r["user_id"], r["avg_amount"]) for r in landed) == [(1, 1.0), (2, 2.0)]
    assert not spooled.exists()
    with FeatureStore(repo) as store:
        assert store.pusher.recover() == 0  # nothing twice
    assert len(offline_rows(repo, project, "user_stats")) == 2


def test_a_live_process_spool_is_not_taken_by_another(repo: Path) -> None:
    t = now() - timedelta(minutes=1)
    with FeatureStore(repo) as live, FeatureStore(repo) as other:
        live.push("user_stats", [stats_row(1, t, 1.0)], to="offline")
        assert other.pusher.recover() == 0  # the live one holds its file
        project = live.project
    assert len(offline_rows(repo, project, "user_stats")) == 1  # landed once, by its owner


def test_http_pushed_rows_are_counted_in_metrics(http: Server) -> None:
    key = push_key(http.repo, "user_stats")
    wait_for_key(http, key)
    t = now() - timedelta(seconds=5)
    rows = [json_row(300 + i, t, 1.0) for i in range(3)]
    assert post_push(http, {"view": "user_stats", "rows": rows}, key).status_code == 200
    text = httpx.get(f"{http.url}/metrics").text
    line = next(
        m
        for m in text.splitlines()
        if m.startswith('featurestore_pushed_rows_total{to="online",view="user_stats"}')
    )
    assert float(line.split()[-1]) >= 3


def test_push_runs_export_as_openlineage_push_jobs_without_inputs(repo: Path) -> None:
    from featurestore.lineage.openlineage import run_events

    with FeatureStore(repo) as store:
        store.push("user_stats", [stats_row(1, now(), 1.0)])
        store.pusher.flush()
        events = list(run_events(store.registry, store.snapshot(), repo, "localhost:9092"))
    (start, complete) = events
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert complete["job"]["name"] == "push.user_stats"
    assert complete["inputs"] == []
    assert complete["outputs"][0]["name"] == "user_stats@v1"


@pytest.fixture(scope="module")
def http_push_key(http: Server) -> str:
    key = push_key(http.repo, "user_stats", "live_scores")
    wait_for_key(http, key)
    return key


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["2026-12-02T07:00:00Z", "9999-12-31T23:59:59", "yesterday", "1e400"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)
FIELDS = st.sampled_from(
    [
        "user_id",
        "event_timestamp",
        "created_timestamp",
        "avg_amount",
        "txn_count",
        "country",
        "",
        "user_id ",
        "score",
    ]
)
PUSH_ROWS = st.one_of(
    st.lists(st.dictionaries(FIELDS, VALUES, max_size=6), max_size=4),
    st.dictionaries(FIELDS, st.lists(VALUES, max_size=3), max_size=4),
    VALUES,
)
PUSH_BODIES = st.one_of(
    st.fixed_dictionaries(
        {"view": st.sampled_from(["user_stats", "live_scores", "nope", ""]), "rows": PUSH_ROWS},
        optional={
            "to": st.one_of(st.sampled_from(["online", "offline", "online_and_offline"]), VALUES),
            "version": VALUES,
            "extra": VALUES,
        },
    ),
    st.binary(max_size=40),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=PUSH_BODIES)
def test_generated_push_bodies_get_a_named_answer_never_a_500(
    http: Server, http_push_key: str, body: Any
) -> None:
    key = http_push_key
    content = body if isinstance(body, bytes) else json.dumps(body).encode()  # big ints too
    r = httpx.post(
        f"{http.url}/v1/push", content=content, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code < 500, (body, r.text)
    if r.status_code >= 400:
        error = r.json()
        assert error["error"], r.text
        assert error["detail"], r.text
        for e in error.get("errors", []):
            assert 0 <= e["row"] < error["rows"]
            assert e["reason"]


def test_an_unwritable_spool_refuses_offline_pushes_with_a_typed_error(repo: Path) -> None:
    state = repo / ".featurestore"
    state.mkdir(exist_ok=True)
    (state / "push-spool").write_text("not a folder")
    t = now()
    with FeatureStore(repo) as store:
        with pytest.raises(PushSpoolError, match="state_dir writable"):
            store.push("user_stats", [stats_row(1, t, 1.0)], to="offline")
        assert store.pusher.buffer.pending() == 0
        assert store.push("user_stats", [stats_row(1, t, 1.0)]).online_written == 1


def test_batching_follows_the_repos_push_settings(repo: Path) -> None:
    """`push: {offline_batch_rows, max_rows}` in featurestore.yaml: 3 buffered rows land
    as one append at once; a push over max_rows is refused; bad settings are named."""
    config = repo / "featurestore.yaml"
    base = config.read_text()
    config.write_text(base + "push:\n  offline_batch_rows: 3\n  max_rows: 4\n")
    t = now() - timedelta(minutes=1)
    with FeatureStore(repo) as store:
        assert store.config.push.offline_batch_rows == 3
        for i in range(3):
            store.push("user_stats", [stats_row(i, t, float(i))], to="offline")
        assert store.pusher.buffer.pending() == 0  # the third row filled the batch
        with pytest.raises(RequestTooLargeError, match="4"):
            store.push("user_stats", [stats_row(i, t, 1.0) for i in range(5)])
        project = store.project
    assert offline_files(repo, project, "user_stats") == 1
    for bad, needle in (
        ("push:\n  offline_batch_rows: 0\n", "push.offline_batch_rows must be a positive integer"),
        ("push:\n  max_rows: 2.5\n", "push.max_rows must be a positive integer"),
        ("push:\n  offline_flush_secs: 1\n", "Did you mean 'offline_flush_seconds'"),
        ("push: 3\n", "'push' must be a mapping"),
    ):
        config.write_text(base + bad)
        with pytest.raises(RepoConfigError, match=re.escape(needle)):
            FeatureStore(repo).config  # noqa: B018
