"""Lineage answers for the example repo after a materialization and a training-set build,
version skew after a promotion, policy decisions in lineage, and OpenLineage export."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import app
from featurestore.config import load_config
from pipelines.generate_data import generate
from tests.helpers import change_credit_limit_dtype
from tests.test_credentials import store  # noqa: F401  (the policy repo, with data)
from tests.test_training_cli import SMALL

pytestmark = pytest.mark.services
runner = CliRunner()


def invoke(repo: Path, *args: str) -> Any:
    result = runner.invoke(app, [*args, "-r", str(repo)])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def built(example_repo: Path, services: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The example repo: applied, materialized (in-process), one training set built."""
    from featurestore.materialize.job import materialize

    monkeypatch.setenv("FEATURESTORE_REDIS_URL", services.redis_url)
    generate(load_config(example_repo), SMALL)
    with FeatureStore(example_repo) as s:
        s.apply()
        materialize(s, None, engine="local")
        runs = {r.view: r for r in s.registry.runs.records(s.project)}  # one run per batch view
    out = example_repo / "data" / "training" / "fraud.parquet"
    record = json.loads(
        invoke(
            example_repo,
            "training-data",
            "--model",
            "fraud_detector",
            "--entities",
            str(example_repo / "data" / "labels.parquet"),
            "--out",
            str(out),
            "--json",
        ).output
    )
    return {"repo": example_repo, "runs": runs, "training_set": record, "out": out}


def test_feature_lineage_follows_source_run_training_set_and_model(built: dict[str, Any]) -> None:
    repo = built["repo"]
    run = built["runs"]["merchant_stats"]
    found = json.loads(
        invoke(repo, "lineage", "feature", "merchant_stats:chargeback_rate_30d", "--json").output
    )
    assert found["feature"] == "merchant_stats:chargeback_rate_30d"
    [version] = found["versions"]
    assert version["version"] == 1
    assert version["dtype"] == "float64"
    assert version["source"] == {
        "name": "merchant_stats_source",
        "type": "parquet",
        "path": "data/sources/merchant_stats",
    }
    assert version["offline"]["manifest"] == run.offline_manifest
    assert version["offline"]["rows"] == run.rows_offline
    [listed_run] = found["materialization_runs"]
    assert listed_run["id"] == run.id
    assert listed_run["status"] == "succeeded"
    assert listed_run["rows_offline"] == run.rows_offline > 0
    [ts] = found["training_sets"]
    assert ts["id"] == built["training_set"]["id"]
    assert ts["features"] == ["merchant_stats@v1:chargeback_rate_30d"]
    assert ts["output_path"] == str(built["out"].resolve())
    assert found["models"] == [
        {
            "model": "fraud_detector",
            "serves": ["merchant_stats@v1:chargeback_rate_30d"],
            "trained_on": ["merchant_stats@v1:chargeback_rate_30d"],
            "services": ["fraud_features"],
            "decision": "allow",
            "rule": None,
            "mask": None,
        }
    ]
    shown = invoke(repo, "lineage", "feature", "merchant_stats:chargeback_rate_30d").output
    assert f"run #{run.id} v1 succeeded" in shown
    assert f"#{ts['id']} fraud_detector" in shown
    # A streamed feature names its topic and its history, and its aggregation.
    streamed = json.loads(
        invoke(repo, "lineage", "feature", "user_txn_stats:amount_sum_1h", "--json").output
    )
    assert streamed["versions"][0]["source"]["topic"] == "card_transactions"
    assert streamed["versions"][0]["source"]["history"]["path"] == "data/sources/transactions"
    assert streamed["versions"][0]["aggregation"] == "sum(amount) over 3600s"


def test_model_lineage_and_version_skew_after_a_promotion(built: dict[str, Any]) -> None:
    repo = built["repo"]
    found = json.loads(invoke(repo, "lineage", "model", "fraud_detector", "--json").output)
    assert [s["feature"] for s in found["serves"]] == built["training_set"]["features"]
    by_feature = {s["feature"]: s for s in found["serves"]}
    credit = by_feature["user_profile@v1:credit_limit"]
    assert credit["last_materialization"]["id"] == built["runs"]["user_profile"].id
    assert credit["decision"] == "allow"
    assert [t["id"] for t in found["training_sets"]] == [built["training_set"]["id"]]
    assert found["skew"] == []
    shown = invoke(repo, "lineage", "model", "fraud_detector").output
    assert "no version skew" in shown
    # The on-demand feature has no source or offline data: it says what it is computed from.
    on_demand = by_feature["txn_amount_vs_1h@v1:amount_vs_1h_avg"]
    assert on_demand["on_demand"]["inputs"] == [
        "user_txn_stats@v1:count_1h",
        "user_txn_stats@v1:amount_sum_1h",
    ]
    assert on_demand["on_demand"]["request_fields"] == ["transaction.amount (float64)"]
    [line] = [x for x in shown.splitlines() if "amount_vs_1h_avg" in x]
    assert "allow computed at request time (python mode, function " in line
    assert line.endswith(
        "from user_txn_stats@v1:count_1h, user_txn_stats@v1:amount_sum_1h, "
        "transaction.amount (float64)"
    )
    shown = invoke(repo, "lineage", "feature", "txn_amount_vs_1h:amount_vs_1h_avg").output
    assert "v1  active   float64" in shown
    assert "computed at request time" in shown
    assert "None" not in shown

    change_credit_limit_dtype(repo)  # user_profile v2
    with FeatureStore(repo) as s:
        s.apply()
        s.promote("fraud_detector")
        _credential, key = s.create_credential("fraud_detector")
    found = json.loads(invoke(repo, "lineage", "model", "fraud_detector", "--json").output)
    assert {
        "feature": "user_profile:credit_limit",
        "serves": "user_profile@v2:credit_limit",
        "trained_on": "user_profile@v1:credit_limit",
    } in found["skew"]
    assert {s["feature"].split(":")[0] for s in found["skew"]} == {"user_profile"}
    assert found["api_keys"] == [key[:20]]
    assert "version skew" in invoke(repo, "lineage", "model", "fraud_detector").output


def test_lineage_shows_each_models_policy_decision(store: FeatureStore) -> None:  # noqa: F811
    from featurestore.lineage.queries import feature_lineage

    found = feature_lineage(
        store.registry, store.snapshot(), store.config.offline_store_path, "profile:email", "allow"
    )
    [fraud] = found["models"]  # promo does not read e-mail (a policy would refuse it)
    assert (fraud["model"], fraud["decision"], fraud["rule"], fraud["mask"]) == (
        "fraud",
        "mask",
        "fraud_joins_on_hashed_pii",
        "hash",
    )


def test_lineage_errors_name_the_object(built: dict[str, Any]) -> None:
    repo = built["repo"]
    for args, message in [
        (["feature", "user_profile:emial"], "Did you mean 'email'"),
        (["feature", "nope:x"], "Unknown feature view 'nope'"),
        (["feature", "no colon"], "Cannot parse feature reference"),
        (["model", "fraud_detectr"], "Did you mean 'fraud_detector'"),
    ]:
        result = runner.invoke(app, ["lineage", *args, "-r", str(repo)])
        assert result.exit_code == 1
        assert message in result.output, result.output


UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_openlineage_export_has_a_start_and_an_end_per_run(built: dict[str, Any]) -> None:
    repo = built["repo"]
    out = repo / "lineage.jsonl"
    invoke(repo, "lineage", "export", "--out", str(out))
    events = [json.loads(line) for line in out.read_text().splitlines()]
    again = invoke(repo, "lineage", "export").output.splitlines()
    assert [json.loads(line) for line in again] == events  # stable: consumers deduplicate

    by_run: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        assert e["schemaURL"].startswith("https://openlineage.io/spec/2-0-2/OpenLineage.json")
        assert e["producer"].startswith("https://")
        assert UUID.match(e["run"]["runId"]), e["run"]["runId"]
        assert uuid.UUID(e["run"]["runId"])
        assert datetime.fromisoformat(e["eventTime"].replace("Z", "+00:00")).tzinfo is not None
        assert e["job"]["namespace"] == "featurestore://payments"
        for dataset in e["inputs"] + e["outputs"]:
            assert dataset["namespace"]
            assert dataset["name"]
            for facet in dataset.get("facets", {}).values():
                assert facet["_producer"].startswith("https://")
                assert facet["_schemaURL"].startswith("https://")
        by_run.setdefault(e["run"]["runId"], []).append(e)
    assert all([x["eventType"] for x in v] == ["START", "COMPLETE"] for v in by_run.values())
    assert len(by_run) == len(built["runs"]) + 1  # the runs and the training set

    materialize = next(
        v[1] for v in by_run.values() if v[1]["job"]["name"] == "materialize.merchant_stats"
    )
    assert materialize["inputs"] == [
        {"namespace": "file", "name": str(repo / "data/sources/merchant_stats")}
    ]
    [output] = materialize["outputs"]
    assert output["name"] == "merchant_stats@v1"
    assert "chargeback_rate_30d" in {f["name"] for f in output["facets"]["schema"]["fields"]}
    facet = materialize["run"]["facets"]["featurestore_materialization"]
    assert facet["rows_online"] == built["runs"]["merchant_stats"].rows_online

    training = next(
        v[1] for v in by_run.values() if v[1]["job"]["name"] == "training_set.fraud_detector"
    )
    manifests = {
        d["name"]: d["inputFacets"]["featurestore_offline_manifest"]["sequence"]
        for d in training["inputs"]
    }
    assert manifests == built["training_set"]["offline_manifests"]
    assert training["outputs"] == [{"namespace": "file", "name": str(built["out"].resolve())}]
