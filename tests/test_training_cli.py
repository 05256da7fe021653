"""The example repo end to end offline: generate, apply, backfill, training-data, lineage."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from typer.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import app
from featurestore.config import load_config
from featurestore.materialize.backfill import backfill
from pipelines.generate_data import GeneratorSettings, generate

SMALL = GeneratorSettings(
    users=200,
    merchants=30,
    days=4,
    transactions=3_000,
    seed=5,
    end=datetime(2026, 2, 1, tzinfo=UTC),
)


def test_fraud_detector_training_set_from_the_example_repo(example_repo: Path) -> None:
    generate(load_config(example_repo), SMALL)
    with FeatureStore(example_repo) as store:
        store.apply()
        written = backfill(store)
    assert written == {
        "merchant_stats@v1": SMALL.merchants * SMALL.days,
        "user_profile@v1": written["user_profile@v1"],
    }
    labels = example_repo / "data" / "labels.parquet"
    out = example_repo / "data" / "training" / "fraud.parquet"
    result = CliRunner().invoke(
        app,
        [
            "training-data",
            "-r",
            str(example_repo),
            "--model",
            "fraud_detector",
            "--entities",
            str(labels),
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    table = pq.read_table(out)
    entity_rows = pq.read_table(labels)
    assert record["rows"] == table.num_rows == entity_rows.num_rows
    # Input columns pass through unchanged and in order.
    assert table.select(entity_rows.column_names).equals(entity_rows)
    assert record["model"] == "fraud_detector"
    assert record["offline_manifests"] == {
        "user_profile@v1": 1,
        "merchant_stats@v1": 1,
        "user_txn_stats@v1": 0,
    }
    assert "user_profile@v1:age" in record["features"]
    # Every label is at or after the merchant's first daily snapshot, within the 7-day TTL.
    assert table.column("chargeback_rate_30d").null_count == 0
    # The PII feature is not part of fraud_features.
    assert "email" not in table.column_names
    # Values are those of the latest snapshot at or before each transaction.
    stats = pq.read_table(example_repo / "data/sources/merchant_stats").to_pylist()
    for row in table.slice(0, 50).to_pylist():
        candidates = [
            s
            for s in stats
            if s["merchant_id"] == row["merchant_id"]
            and s["event_timestamp"] <= row["event_timestamp"]
        ]
        latest = max(candidates, key=lambda s: s["event_timestamp"])
        assert row["avg_ticket_30d"] == latest["avg_ticket_30d"]

    listed = CliRunner().invoke(
        app, ["training-sets", "-r", str(example_repo), "--model", "fraud_detector"]
    )
    assert listed.exit_code == 0
    assert f"#{record['id']}" in listed.output
    assert str(out.resolve()) in listed.output
    assert pc.sum(table.column("is_fraud")).as_py() > 0


def test_training_data_errors_are_one_line(example_repo: Path) -> None:
    with FeatureStore(example_repo) as store:
        store.apply()
    missing = example_repo / "nope.parquet"
    result = CliRunner().invoke(
        app,
        [
            "training-data",
            "-r",
            str(example_repo),
            "--service",
            "fraud_features",
            "--entities",
            str(missing),
            "--out",
            str(example_repo / "o.parquet"),
        ],
    )
    assert result.exit_code == 1
    assert "Entity input" in result.output
    assert "does not exist" in result.output
    result = CliRunner().invoke(
        app,
        [
            "training-data",
            "-r",
            str(example_repo),
            "--service",
            "fraud_featurs",
            "--entities",
            str(missing),
            "--out",
            str(example_repo / "o.parquet"),
        ],
    )
    assert result.exit_code == 1
    assert "Did you mean 'fraud_features'?" in result.output


def test_a_spine_training_set_from_the_example_repo(example_repo: Path) -> None:
    """No entity file: every merchant_stats row of the last two days, as known now."""
    generate(load_config(example_repo), SMALL)
    with FeatureStore(example_repo) as store:
        store.apply()
        backfill(store)
    out = example_repo / "data" / "training" / "merchants.parquet"
    args = ["training-data", "-r", str(example_repo), "-o", str(out), "--json"]
    args += ["-f", "merchant_stats:txn_count_30d", "-f", "merchant_stats:category"]
    window = ["--start", "2026-01-30", "--end", "2026-02-01", "--as-of", "2100-01-01"]
    result = CliRunner().invoke(app, [*args, "--spine", "merchant_stats", *window])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["spine"] == {
        "view": "merchant_stats@v1",
        "start": "2026-01-30T00:00:00+00:00",
        "end": "2026-02-01T00:00:00+00:00",
    }
    table = pq.read_table(out)
    assert table.column_names == [
        "merchant_id",
        "event_timestamp",
        "txn_count_30d",
        "category",
    ]
    assert record["rows"] == table.num_rows == SMALL.merchants * 2  # one row a merchant a day
    assert table.column("txn_count_30d").null_count == 0  # each row finds itself
