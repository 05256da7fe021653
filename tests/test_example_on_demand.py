"""The example repo's on-demand feature: fraud_detector's amount_vs_1h_avg, computed from
the request's amount and the user's stored 1-hour window.

Real Redis and Parquet: the example's batch views are backfilled offline and online, and
user_txn_stats (a streaming view) gets the same rows in both stores, as its consumer
writes them. A lookup then needs the amount (422 naming it otherwise, in-process and over
HTTP, and a clear CLI error), and the training set holds the same values as the lookup.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import app as cli_app
from featurestore.config import load_config
from featurestore.errors import EntityInputError
from featurestore.materialize.backfill import backfill
from featurestore.serving.app import create_app
from pipelines.generate_data import GeneratorSettings, generate

pytestmark = pytest.mark.services
_projects = itertools.count()
TINY = GeneratorSettings(users=30, merchants=6, days=3, transactions=600, seed=11)
NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW = NOW - timedelta(minutes=5)  # when user_txn_stats' rows were last updated

# user_id -> (count_1h, amount_sum_1h); user 4 has no row at all.
TXN_STATS = {1: (4, 200.0), 2: (0, 0.0), 3: (2, 0.0)}
AMOUNTS = {1: 120.5, 2: 10.0, 3: 3.0, 4: 7.0}
# amount / (amount_sum_1h / count_1h); null without 1-hour history (or a zero average).
EXPECTED = [120.5 / (200.0 / 4), None, None, None]


def txn_stats_rows() -> pa.Table:
    users = list(TXN_STATS)
    count_1h = [TXN_STATS[u][0] for u in users]
    sum_1h = [TXN_STATS[u][1] for u in users]
    return pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "event_timestamp": pa.array([WINDOW] * len(users), pa.timestamp("us", tz="UTC")),
            "count_10m": pa.array([min(c, 1) for c in count_1h], pa.int64()),
            "count_1h": pa.array(count_1h, pa.int64()),
            "count_1d": pa.array([c + 5 for c in count_1h], pa.int64()),
            "amount_sum_10m": pa.array([s / 2 for s in sum_1h], pa.float64()),
            "amount_sum_1h": pa.array(sum_1h, pa.float64()),
            "amount_sum_1d": pa.array([s + 500.0 for s in sum_1h], pa.float64()),
            "amount_max_1d": pa.array([99.0] * len(users), pa.float64()),
        }
    )


@pytest.fixture
def env(services: Any, example_repo: Path) -> Iterator[dict[str, str]]:
    """The example repo, in a project of its own on the test Redis, with data."""
    config = example_repo / "featurestore.yaml"
    project = f"exod{os.getpid()}x{next(_projects)}"
    config.write_text(config.read_text().replace("project: payments", f"project: {project}"))
    settings = {"FEATURESTORE_REDIS_URL": services.redis_url}
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)  # the repo's config reads it, as the CLI's does
    try:
        generate(load_config(example_repo), TINY)
        with FeatureStore(example_repo) as store:
            store.apply()
            backfill(store, online=True)
            view = store.snapshot().feature_view("user_txn_stats", 1)
            store.offline_store().write(view, 1, txn_stats_rows())
            store.write_online("user_txn_stats", txn_stats_rows())
        yield settings
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def store(env: dict[str, str], example_repo: Path) -> Iterator[FeatureStore]:
    with FeatureStore(example_repo) as s:
        yield s


def rows(merchant: str = "m_00001") -> list[dict[str, Any]]:
    return [{"user_id": u, "merchant_id": merchant, "amount": a} for u, a in AMOUNTS.items()]


def test_lookup_computes_amount_vs_1h_avg_from_the_request(store: FeatureStore) -> None:
    response = store.get_online_features(rows(), model="fraud_detector")
    got = response.to_dict()
    assert got["amount_vs_1h_avg"] == EXPECTED
    assert got["count_1h"] == [4, 0, 2, None]
    assert response.status_dict()["amount_vs_1h_avg"] == ["present"] * 4
    assert list(got)[-1] == "amount_vs_1h_avg"  # the service's last feature
    # Its event time is its inputs' latest: the window's update.
    assert response.event_times()["amount_vs_1h_avg"][0] == WINDOW
    # A whole-number amount is a float64 too.
    again = store.get_online_features(
        [{"user_id": 1, "merchant_id": "m_00001", "amount": 100}], model="fraud_detector"
    )
    assert again.to_dict()["amount_vs_1h_avg"] == [2.0]


def test_training_set_equals_the_lookup_value_for_value(store: FeatureStore) -> None:
    entity_rows = rows()
    entities = pa.table(
        {
            "user_id": pa.array([r["user_id"] for r in entity_rows], pa.int64()),
            "merchant_id": pa.array([r["merchant_id"] for r in entity_rows], pa.string()),
            "amount": pa.array([r["amount"] for r in entity_rows], pa.float64()),
            # At the lookup's state: after every stored row, within every TTL.
            "event_timestamp": pa.array([NOW] * len(entity_rows), pa.timestamp("us", tz="UTC")),
        }
    )
    online = store.get_online_features(entity_rows, model="fraud_detector").to_dict()
    training = store.get_training_data(entities, model="fraud_detector").table
    assert training is not None
    features = [c for c in online if c not in ("user_id", "merchant_id")]
    assert training.column_names == [*entities.column_names, *features]
    for name in features:
        assert training.column(name).to_pylist() == online[name], name
    assert training.column("amount_vs_1h_avg").to_pylist() == EXPECTED
    assert training.schema.field("amount_vs_1h_avg").type == pa.float64()
    # Batch features were found too: the comparison is not of nulls only.
    assert None not in training.column("age").to_pylist()


def test_lookup_without_amount_is_422_naming_it(store: FeatureStore) -> None:
    no_amount = [{"user_id": 1, "merchant_id": "m_00001"}]
    with pytest.raises(EntityInputError, match=r"row 0 has no request field 'amount'") as caught:
        store.get_online_features(no_amount, model="fraud_detector")
    assert caught.value.http_status == 422
    assert "RequestSource 'transaction'" in str(caught.value)
    _credential, key = store.create_credential("fraud_detector")
    with TestClient(create_app(feature_store=store)) as http:
        headers = {"Authorization": f"Bearer {key}"}
        r = http.post("/v1/features", json={"entities": no_amount}, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "EntityInputError"
        assert "no request field 'amount'" in r.json()["detail"]
        mistyped = [{"user_id": 1, "merchant_id": "m_00001", "amount": "120.5"}]
        r = http.post("/v1/features", json={"entities": mistyped}, headers=headers)
        assert r.status_code == 422, r.text
        assert "request field 'amount'" in r.json()["detail"]
        assert "float64" in r.json()["detail"]
        r = http.post("/v1/features", json={"entities": rows()}, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        at = body["metadata"]["feature_names"].index("amount_vs_1h_avg")
        assert body["results"][at]["values"] == EXPECTED


def cli(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli_app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def test_cli_types_request_fields_by_their_dtype(
    env: dict[str, str], example_repo: Path, store: FeatureStore
) -> None:
    repo = str(example_repo)
    lookup = ["get-online", "-r", repo, "--model", "fraud_detector", "-e", "user_id=1"]
    lookup += ["-e", "merchant_id=m_00001"]
    out = json.loads(cli(env, *lookup, "-e", "amount=120.5", "--json"))
    at = out["metadata"]["feature_names"].index("amount_vs_1h_avg")
    assert out["results"][at]["values"] == [EXPECTED[0]]
    expected = json.loads(
        store.get_online_features(rows()[:1], model="fraud_detector").to_json_text()
    )
    assert out["results"] == expected["results"]
    text = cli(env, *lookup, "-e", "amount=100")
    assert "amount_vs_1h_avg" in text
    assert "2.0" in text.split("amount_vs_1h_avg", 1)[1].splitlines()[0]
    bad = cli(env, *lookup, "-e", "amount=lots", code=1)
    assert "--entity amount=lots: amount is float64" in bad
    missing = cli(env, *lookup, code=1)
    assert "no request field 'amount'" in missing
    typo = cli(env, *lookup, "-e", "amonut=1.0", code=1)
    assert "Did you mean 'amount'?" in typo
    assert "It needs: user_id, merchant_id, amount" in typo
