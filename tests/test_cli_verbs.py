"""CLI verbs no other test runs, on the example repo against the real services:
generate-data (seeded), get-online, online cleanup and stream create-topic."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from kafka import KafkaConsumer
from typer.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import app
from featurestore.online.layout import ViewLayout

pytestmark = [pytest.mark.services]
SMALL = ["--users", "60", "--merchants", "12", "--days", "3", "--transactions", "1500"]


@pytest.fixture
def env(services: Any, example_repo: Path) -> dict[str, str]:
    """The example repo pointed at the test services, in a project of its own."""
    config = example_repo / "featurestore.yaml"
    config.write_text(config.read_text().replace("project: payments", f"project: cli{os.getpid()}"))
    return {
        "FEATURESTORE_REDIS_URL": services.redis_url,
        "FEATURESTORE_KAFKA": services.kafka_bootstrap,
    }


def cli(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def sources(repo: Path) -> dict[str, Any]:
    folder = repo / "data" / "sources"
    return {p.name: pq.read_table(p) for p in sorted(folder.iterdir())}


def test_generate_data_is_seeded(env: dict[str, str], example_repo: Path, tmp_path: Path) -> None:
    cli(env, "generate-data", "-r", str(example_repo), *SMALL)
    first = sources(example_repo)
    assert first, "no source written"
    assert first["transactions"].num_rows == 1500
    cli(env, "generate-data", "-r", str(example_repo), *SMALL)
    again = sources(example_repo)
    assert {k: t.to_pylist() for k, t in again.items()} == {
        k: t.to_pylist() for k, t in first.items()
    }
    cli(env, "generate-data", "-r", str(example_repo), *SMALL, "--seed", "8")
    other = sources(example_repo)
    assert other["transactions"].to_pylist() != first["transactions"].to_pylist()


def test_get_online_matches_the_python_lookup_and_cleanup_removes_stray_values(
    env: dict[str, str], example_repo: Path
) -> None:
    repo = str(example_repo)
    cli(env, "generate-data", "-r", repo, *SMALL)
    cli(env, "apply", "-r", repo)
    cli(env, "materialize", "-r", repo, "--engine", "local")
    out = json.loads(
        cli(env, "get-online", "-r", repo, "-f", "user_profile:age", "-e", "user_id=1", "--json")
    )
    os.environ.update(env)  # the store reads the same settings as the CLI did
    try:
        with FeatureStore(example_repo) as store:
            expected = store.get_online_features(
                [{"user_id": 1}], features=["user_profile:age"]
            ).to_dict()
            assert expected["age"][0] is not None
            assert out["metadata"]["feature_names"] == ["age"]
            assert out["entities"] == {"user_id": [1]}
            assert out["results"][0]["values"] == expected["age"]
            assert out["results"][0]["statuses"] == ["present"]
            # Nothing retired yet: nothing to clean.
            assert "No retired versions." in cli(env, "online", "cleanup", "-r", repo)
            # A version retired while a write was still landing leaves values behind.
            snapshot = store.snapshot()
            (retired,) = [vv for vv in snapshot.versions["user_profile"].values()][:1]
            layout = ViewLayout.from_version(snapshot, retired)
    finally:
        for key in env:
            os.environ.pop(key, None)
    defs = example_repo / "user_profile.py"
    defs.write_text(
        defs.read_text().replace(
            'Field(name="credit_limit", dtype=Float64)',
            'Field(name="credit_limit", dtype="float32")',
        )
    )
    cli(env, "apply", "-r", repo)
    for model in ("fraud_detector", "promo_ranker"):
        cli(env, "promote", model, "-r", repo)
    cli(env, "retire", "user_profile@v1", "-r", repo)
    os.environ.update(env)
    try:
        with FeatureStore(example_repo) as store:
            writer = store.online_writer()
            n = len(layout.features)
            now_us = time.time_ns() // 1000
            stats = writer.write(layout, [((k,), now_us, None, (None,) * n) for k in (1, 2, 3)])
            assert stats.written == 3
    finally:
        for key in env:
            os.environ.pop(key, None)
    cleaned = cli(env, "online", "cleanup", "-r", repo)
    assert "user_profile@v1: removed 3 online value(s)" in cleaned, cleaned


def test_stream_create_topic_creates_the_topic_and_its_dead_letter_topic(
    env: dict[str, str], example_repo: Path, services: Any
) -> None:
    repo = str(example_repo)
    topic = f"card_transactions_{os.getpid()}"
    sources_py = example_repo / "sources.py"
    sources_py.write_text(sources_py.read_text().replace('"card_transactions"', f'"{topic}"'))
    cli(env, "apply", "-r", repo)
    created = cli(env, "stream", "create-topic", "user_txn_stats", "--partitions", "3", "-r", repo)
    assert f"Created topic '{topic}' (3 partitions)" in created
    again = cli(env, "stream", "create-topic", "user_txn_stats", "-r", repo)
    assert f"Topic '{topic}' exists already" in again
    consumer = KafkaConsumer(bootstrap_servers=services.kafka_bootstrap)
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1, 2}
        assert consumer.partitions_for_topic(f"{topic}.dlq") == {0}
    finally:
        consumer.close()
