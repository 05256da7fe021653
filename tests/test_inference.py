"""End to end with the real broker, stream consumer, Redis, drift monitor and the example
inference service: transactions like those the model was trained on are scored by the
model with status ok; shifted ones lead the service to report drift, and fall back,
within a bounded time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from featurestore import FeatureStore
from featurestore.config import load_config
from featurestore.devservices import free_port
from pipelines.generate_data import generate, live_events, produce_events
from tests.helpers import replace_in_file
from tests.test_training_cli import SMALL as SMALL_THEN

pytestmark = [pytest.mark.services, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
# The history ends today: served batch values are then within their views' TTL.
SMALL = replace(SMALL_THEN, end=None)
DRIFT_WITHIN = 60.0  # seconds from producing shifted events to the service reporting drift


def spawn(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        cwd=ROOT,
    )


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout} s")


@pytest.fixture
def live_repo(example_repo: Path, services: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The example repo on the test services (own project and topic), applied and its
    batch views materialized."""
    from featurestore.materialize.job import materialize

    suffix = str(time.monotonic_ns())[-8:]
    replace_in_file(
        example_repo / "featurestore.yaml", "project: payments", f"project: e2e{suffix}"
    )
    replace_in_file(
        example_repo / "sources.py", 'topic="card_transactions"', f'topic="txn{suffix}"'
    )
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", services.redis_url)
    monkeypatch.setenv("FEATURESTORE_KAFKA", services.kafka_bootstrap)
    generate(load_config(example_repo), SMALL)
    with FeatureStore(example_repo) as store:
        store.apply()
        materialize(store, None, engine="local")
        _credential, key = store.create_credential("fraud_detector")
        config = store.config
    return {"repo": example_repo, "config": config, "key": key, "topic": f"txn{suffix}"}


def train_on(repo: Path, events: list[dict[str, Any]], model_path: Path) -> None:
    """Build fraud_detector's training set from ``events`` as they are now (their labels:
    a simple rule) and train the example model on it: its reference is today's world."""
    import pyarrow as pa

    from examples.fraud_inference.model import train

    now = datetime.now(UTC)
    spine = pa.table(
        {
            "user_id": pa.array([e["user_id"] for e in events], pa.int64()),
            "merchant_id": [e["merchant_id"] for e in events],
            "amount": [e["amount"] for e in events],
            "event_timestamp": pa.array([now] * len(events), pa.timestamp("us", tz="UTC")),
            "is_fraud": [e["amount"] > 80 for e in events],
        }
    )
    out = repo / "data" / "training" / "fraud.parquet"
    with FeatureStore(repo) as store:
        store.get_training_data(spine, model="fraud_detector", output_path=out)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.write_text(json.dumps(train(out)))


def score(url: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with httpx.Client(base_url=url, timeout=10) as client:
        answers = []
        for e in events:
            response = client.post("/predict", json=e)
            assert response.status_code == 200, response.text
            answers.append(response.json())
        return answers


def test_shifted_transactions_make_the_inference_service_report_drift(
    live_repo: dict[str, Any], tmp_path: Path
) -> None:
    repo, config = live_repo["repo"], live_repo["config"]
    model_path = repo / "data" / "models" / "fraud_detector.json"
    cli = [sys.executable, "-m", "featurestore.cli"]
    consumer = spawn(
        [*cli, "stream", "-r", str(repo), "--flush-seconds", "0.5"], tmp_path / "c.log"
    )
    processes = [consumer]

    def stream(events: list[dict[str, Any]]) -> None:
        from featurestore.streaming.admin import group_status

        produce_events(config, SMALL, len(events), topic=live_repo["topic"], events=events)
        with FeatureStore(repo) as store:
            wait_for(
                lambda: (
                    (s := group_status(store, "user_txn_stats"))["consumers"]
                    and s["total_lag"] == 0
                ),
                60,
                f"the consumer did not catch up (log: {(tmp_path / 'c.log').read_text()})",
            )

    try:
        usual = live_events(SMALL, 500, seed=11)
        stream(usual)
        train_on(repo, usual, model_path)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        processes.append(
            spawn(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "examples.fraud_inference.app:app_from_env",
                    "--factory",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                tmp_path / "s.log",
                FEATURESTORE_REPO=str(repo),
                FEATURESTORE_API_KEY=live_repo["key"],
                FRAUD_MODEL=str(model_path),
            )
        )
        processes.append(
            spawn(
                [*cli, "drift", "monitor", "-r", str(repo), "--interval", "1"], tmp_path / "m.log"
            )
        )
        wait_for(lambda: _up(url), 30, "the inference service did not start")

        # The same world the model was trained on: scored by the model, status ok.
        answers = score(url, usual)
        assert {a["mode"] for a in answers} == {"model"}
        assert all(0 <= a["fraud_probability"] <= 1 for a in answers)
        checked = wait_for(
            lambda: (a := score(url, usual[-1:])[0])["drift"]["status"] != "unknown" and a,
            30,
            f"the monitor did not publish a status (log: {(tmp_path / 'm.log').read_text()})",
        )
        assert checked["drift"]["status"] == "ok", checked["drift"]
        assert checked["mode"] == "model"

        # The world shifts: transactions twenty times larger.
        started = time.monotonic()
        shifted = live_events(SMALL, 300, seed=12, amount_scale=20.0)
        stream(shifted)
        score(url, shifted)
        reported = wait_for(
            lambda: (a := score(url, shifted[-1:])[0])["drift"]["status"] == "drift" and a,
            DRIFT_WITHIN,
            "the service did not report drift",
        )
        assert time.monotonic() - started < DRIFT_WITHIN
        assert reported["mode"] == "fallback"
        # The window holds the usual samples too: the shifted amounts flag the feature.
        assert reported["drift"]["features"]["user_txn_stats:amount_sum_1h"] in ("warn", "drift")
        expected = 0.9 if shifted[-1]["amount"] > 500 else 0.02  # the declared fallback rule
        assert reported["fraud_probability"] == expected
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert 'fraud_inference_drift_status{status="drift"} 1.0' in metrics
        assert 'fraud_inference_predictions_total{mode="fallback"}' in metrics
    finally:
        for proc in reversed(processes):
            stop(proc)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
