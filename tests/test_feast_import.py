"""`featurestore import-feast`: Feast repos (the one `feast init` writes, and one with Kafka
and TTL cases) converted, reported, and training sets built by both tools from the same
data compared value by value."""

from __future__ import annotations

import collections
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import app
from featurestore.materialize.backfill import backfill
from featurestore.migrate.feast import import_feast

pytest.importorskip("feast")
FEAST = str(Path(sys.executable).parent / "feast")
UTC_US = pa.timestamp("us", tz="UTC")


def feast_training_set(repo: Path, entities: pa.Table, features: list[str]) -> pa.Table:
    from feast import FeatureStore as FeastStore

    subprocess.run([FEAST, "apply"], cwd=repo, check=True, capture_output=True)
    store = FeastStore(repo_path=str(repo))
    return store.get_historical_features(
        entity_df=entities.to_pandas(), features=features
    ).to_arrow()


def by_row(table: pa.Table, columns: list[str]) -> dict[int, tuple[Any, ...]]:
    rows = table.select(["row_id", *columns]).to_pylist()
    return {r["row_id"]: tuple(r[c] for c in columns) for r in rows}


def assert_same_training_sets(
    ours_repo: Path,
    feast_repo: Path,
    entities: pa.Table,
    refs: list[str],
    request_fields: tuple[str, ...] = (),
) -> pa.Table:
    """Both tools' point-in-time joins of ``entities`` (with a row_id) give equal values on
    every row both return. featurestore returns every input row; Feast's file offline
    store loses two kinds (its dask join drops them): repeats of an (entity, time) pair,
    and rows of an entity with no feature row within a view's TTL. Each lost row must be
    one of those, with nulls on our side."""
    with FeatureStore(ours_repo) as store:
        ours = store.get_training_data(entities, features=refs).table
    theirs = feast_training_set(feast_repo, entities, refs)
    columns = [r.split(":")[1] for r in refs]
    mine, feast = by_row(ours, columns), by_row(theirs, columns)
    assert set(mine) == set(entities.column("row_id").to_pylist())
    assert set(feast) <= set(mine)
    differing = {i: (mine[i], feast[i]) for i in feast if mine[i] != feast[i]}
    assert not differing, f"{len(differing)} rows differ, e.g. {list(differing.items())[:3]}"
    keys = [
        c for c in entities.column_names if c not in ("row_id", "event_timestamp", *request_fields)
    ]
    pairs = collections.Counter(
        (*(r[k] for k in keys), r["event_timestamp"]) for r in entities.to_pylist()
    )
    for r in entities.to_pylist():
        if r["row_id"] not in feast:
            repeated = pairs[(*(r[k] for k in keys), r["event_timestamp"])] > 1
            assert repeated or None in mine[r["row_id"]], (r, mine[r["row_id"]])
    assert len(feast) >= len(mine) // 2  # most rows compared value by value
    assert any(v is not None for row in mine.values() for v in row)  # not all empty
    assert any(v is None for row in mine.values() for v in row)  # the edges were reached
    return ours


def test_the_feast_init_repo_converts_and_trains_identically(tmp_path: Path) -> None:
    subprocess.run([FEAST, "init", "drivers"], cwd=tmp_path, check=True, capture_output=True)
    feast_repo = tmp_path / "drivers" / "feature_repo"
    out = tmp_path / "imported"
    result = CliRunner().invoke(app, ["import-feast", str(feast_repo), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "OnDemandFeatureView transformed_conv_rate" not in result.output  # converted
    report = (out / "IMPORT_REPORT.md").read_text()
    for expected in (
        "FeatureView `driver_hourly_stats`",
        "FeatureService `driver_activity_v1`",
        "LabelView `driver_quality_labels`",
        "field `driver_metadata` (Map) left out",
        "push source `driver_stats_push_source`",
        "OnDemandFeatureView `transformed_conv_rate`",
        "RequestSource `vals_to_add`",
    ):
        assert expected in report
    with FeatureStore(out) as store:
        store.apply()
        view = store.snapshot().feature_view("driver_hourly_stats")
        assert view.ttl == timedelta(days=1)
        assert [f.name for f in view.schema] == ["conv_rate", "acc_rate", "avg_daily_trips"]
        assert [str(f.dtype) for f in view.schema] == ["float32", "float32", "int64"]
        assert store.snapshot().resolve_all(["driver_activity_v1"])[0].feature == "conv_rate"
        backfill(store)

    data = pq.read_table(feast_repo / "data" / "driver_stats.parquet")
    times = data.column("event_timestamp").cast(UTC_US).to_pylist()
    drivers = sorted(set(data.column("driver_id").to_pylist()))
    rng = random.Random(3)
    rows = []
    for i in range(300):
        at = rng.choice(times)
        at += rng.choice(
            [timedelta(0), timedelta(minutes=17), timedelta(days=1), -timedelta(days=3)]
        )
        rows.append({"row_id": i, "driver_id": rng.choice(drivers), "event_timestamp": at})
    rows.append({"row_id": 300, "driver_id": 999_999, "event_timestamp": times[0]})
    for r in rows:  # the request fields of its on-demand view
        r["val_to_add"], r["val_to_add_2"] = r["row_id"] % 7, 10 * (r["row_id"] % 3)
    entities = pa.Table.from_pylist(
        rows,
        pa.schema(
            [
                ("row_id", pa.int64()),
                ("driver_id", pa.int64()),
                ("event_timestamp", UTC_US),
                ("val_to_add", pa.int64()),
                ("val_to_add_2", pa.int64()),
            ]
        ),
    )
    refs = [f"driver_hourly_stats:{f}" for f in ("conv_rate", "acc_rate", "avg_daily_trips")]
    refs += [f"transformed_conv_rate:conv_rate_plus_val{i}" for i in (1, 2)]
    assert_same_training_sets(
        out, feast_repo, entities, refs, request_fields=("val_to_add", "val_to_add_2")
    )


KAFKA_REPO = """
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, KafkaSource, ValueType
from feast.aggregation import Aggregation
from feast.data_format import JsonFormat
from feast.stream_feature_view import stream_feature_view
from feast.types import Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
payments_log = FileSource(
    name="payments_log",
    path="data/payments.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)
payments = KafkaSource(
    name="payments",
    kafka_bootstrap_servers="broker:9092",
    topic="payments",
    timestamp_field="event_timestamp",
    batch_source=payments_log,
    message_format=JsonFormat(
        schema_json="user_id bigint, amount double, country string, event_timestamp timestamp"
    ),
    watermark_delay_threshold=timedelta(minutes=3),
)
profiles = FileSource(name="profiles", path="data/profiles.parquet", timestamp_field="ts")

last_payment = FeatureView(
    name="last_payment",
    entities=[user],
    ttl=timedelta(hours=2),
    schema=[Field(name="amount", dtype=Float64), Field(name="country", dtype=String)],
    source=payments,
    owner="payments@example.com",
)
profile = FeatureView(
    name="profile",
    entities=[user],
    ttl=timedelta(0),  # never expires
    schema=[Field(name="segment", dtype=String), Field(name="tenure", dtype=Int64)],
    source=profiles,
)


@stream_feature_view(
    entities=[user],
    ttl=timedelta(days=1),
    mode="spark",
    schema=[Field(name="amount", dtype=Float64)],
    timestamp_field="event_timestamp",
    online=True,
    source=payments,
    aggregations=[Aggregation(column="amount", function="sum", time_window=timedelta(hours=1))],
)
def payment_sums(df):
    return df


checkout = FeatureService(name="checkout", features=[last_payment, profile[["segment"]]])
"""


def feast_repo_at(repo: Path, project: str, definitions: str) -> Path:
    """A Feast repo: local provider, SQLite online store, one ``definitions.py``."""
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(
        f"project: {project}\nregistry: data/registry.db\nprovider: local\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\n"
        "entity_key_serialization_version: 3\n"
    )
    (repo / "definitions.py").write_text(definitions)
    return repo


@pytest.fixture
def kafka_feast_repo(tmp_path: Path) -> Path:
    repo = feast_repo_at(tmp_path / "kafka_feast", "payments_feast", KAFKA_REPO)
    base = datetime(2026, 3, 1, tzinfo=UTC)
    rng = random.Random(9)
    payments = []
    for _ in range(400):
        at = base + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
        payments.append(
            {
                "user_id": rng.randrange(1, 30),
                "amount": round(rng.uniform(1, 500), 2),
                "country": rng.choice(["DE", "FR", None]),
                "event_timestamp": at,
                "created": at + timedelta(seconds=rng.randrange(0, 5)),
            }
        )
    # A tie on event time, broken by the created time (the later one wins in both tools).
    tie = base + timedelta(hours=5)
    payments += [
        {"user_id": 7, "amount": 1.0, "country": "DE", "event_timestamp": tie, "created": tie},
        {
            "user_id": 7,
            "amount": 2.0,
            "country": "FR",
            "event_timestamp": tie,
            "created": tie + timedelta(seconds=1),
        },
    ]
    pq.write_table(pa.Table.from_pylist(payments), repo / "data" / "payments.parquet")
    profiles = [
        {
            "user_id": u,
            "segment": rng.choice(["a", "b"]),
            "tenure": rng.randrange(0, 99),
            "ts": base - timedelta(days=rng.randrange(0, 400)),
        }
        for u in range(1, 25)
    ]
    pq.write_table(pa.Table.from_pylist(profiles), repo / "data" / "profiles.parquet")
    return repo


def test_a_repo_with_kafka_and_ttls_converts_and_trains_identically(
    kafka_feast_repo: Path, tmp_path: Path, spark: Any
) -> None:
    from featurestore.streaming.spark_batch import backfill as stream_backfill

    out = tmp_path / "imported"
    report = import_feast(kafka_feast_repo, out)
    assert ("KafkaSource", "payments") in report.converted
    assert ("StreamFeatureView", "payment_sums") in [(k, n) for k, n, _ in report.skipped]
    with FeatureStore(out) as store:
        store.apply()
        snap = store.snapshot()
        stream = snap.feature_view("last_payment")
        assert stream.source.topic == "payments"
        assert stream.source.bootstrap_servers == "broker:9092"
        assert stream.source.allowed_lateness == timedelta(minutes=3)
        assert [f.name for f in stream.source.schema] == [
            "user_id",
            "amount",
            "country",
            "event_timestamp",
        ]
        assert stream.source.batch_source.created_timestamp_field == "created"
        assert stream.ttl == timedelta(hours=2)
        assert stream.owner == "payments@example.com"
        assert snap.feature_view("profile").ttl is None  # Feast's 0: never expires
        backfill(store)  # the batch view
        stream_backfill(store, "last_payment", source="source", session=spark)

    payments = pq.read_table(kafka_feast_repo / "data" / "payments.parquet").to_pylist()
    rng = random.Random(4)
    rows = []
    edges = [
        timedelta(0),
        timedelta(hours=2),
        timedelta(hours=2, microseconds=1),
        timedelta(minutes=30),
        -timedelta(microseconds=1),
    ]
    for i in range(300):
        p = rng.choice(payments)
        rows.append(
            {
                "row_id": i,
                "user_id": p["user_id"],
                "event_timestamp": p["event_timestamp"] + rng.choice(edges),
            }
        )
    rows.append({"row_id": 300, "user_id": 7, "event_timestamp": payments[-1]["event_timestamp"]})
    rows.append({"row_id": 301, "user_id": 29, "event_timestamp": payments[0]["event_timestamp"]})
    entities = pa.Table.from_pylist(
        rows,
        pa.schema([("row_id", pa.int64()), ("user_id", pa.int64()), ("event_timestamp", UTC_US)]),
    )
    refs = ["last_payment:amount", "last_payment:country", "profile:segment", "profile:tenure"]
    ours = assert_same_training_sets(out, kafka_feast_repo, entities, refs)
    tie = ours.filter(pa.compute.equal(ours.column("row_id"), 300)).to_pylist()[0]
    assert tie["amount"] == 2.0  # the later created time won the tie


def test_feast_names_that_are_not_identifiers_are_renamed_and_reported(tmp_path: Path) -> None:
    """Feast takes any string as a name ("Credit history", as in published repos); the
    import renames such objects to identifiers, says so, and the result applies."""
    feast_repo = feast_repo_at(
        tmp_path / "feast",
        "credit",
        "from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType\n"
        "from feast.types import Int64\n"
        'person = Entity(name="person", join_keys=["person_id"], value_type=ValueType.INT64)\n'
        'history = FileSource(name="Credit history", path="data/history.parquet",\n'
        '    timestamp_field="event_timestamp")\n'
        'credit = FeatureView(name="credit_history", entities=[person], source=history,\n'
        '    schema=[Field(name="loans", dtype=Int64)])\n'
        'scoring = FeatureService(name="credit-scoring v2", features=[credit])\n'
        'scoring_too = FeatureService(name="credit scoring-v2", features=[credit])\n',
    )
    out = tmp_path / "imported"
    report = import_feast(feast_repo, out)
    assert ("FileSource", "Credit history") in report.converted
    assert any("`Credit history` is named `Credit_history`" in n for n in report.notes)
    with FeatureStore(out) as store:
        store.apply()
        snapshot = store.snapshot()
        assert sorted(snapshot.active("source")) == ["Credit_history"]
        assert snapshot.feature_view("credit_history").source.name == "Credit_history"
        # Two Feast names that read alike stay two objects.
        assert sorted(snapshot.active("feature_service")) == [
            "credit_scoring_v2",
            "credit_scoring_v2_2",
        ]
