"""The UI tests' world: the example repo, materialized, with a training set, drift checks
and an operator's key, served by ``featurestore ui`` on loopback (one per test run)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import replace_in_file

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class UiRepo:
    repo: Path
    project: str
    operator_key: str
    model_key: str
    training_set: int


@pytest.fixture(scope="session")
def ui_repo(tmp_path_factory: pytest.TempPathFactory, services: Any) -> Iterator[UiRepo]:
    """The example repo (own project) applied, its batch views materialized in-process, a
    training set for fraud_detector (with its reference profile), served lookups sampled
    and two drift checks recorded; the environment points at the test services."""
    import shutil

    from featurestore import FeatureStore
    from featurestore.config import load_config
    from featurestore.drift.monitor import run_checks
    from featurestore.materialize.job import materialize
    from pipelines.generate_data import generate
    from tests.test_training_cli import SMALL

    repo = tmp_path_factory.mktemp("ui") / "feature_repo"
    shutil.copytree(
        ROOT / "feature_repo",
        repo,
        ignore=shutil.ignore_patterns("data", "__pycache__", ".featurestore"),
    )
    project = f"ui{time.monotonic_ns() % 10**8}"
    replace_in_file(repo / "featurestore.yaml", "project: payments", f"project: {project}")
    saved = {k: os.environ.get(k) for k in ("FEATURESTORE_REDIS_URL", "FEATURESTORE_KAFKA")}
    os.environ["FEATURESTORE_REDIS_URL"] = services.redis_url
    os.environ["FEATURESTORE_KAFKA"] = services.kafka_bootstrap
    try:
        generate(load_config(repo), replace(SMALL, end=None))  # ends now: values within TTL
        with FeatureStore(repo) as store:
            store.apply()
            materialize(store, None, engine="local")
            built = store.get_training_data(
                repo / "data" / "labels.parquet",
                model="fraud_detector",
                output_path=repo / "data" / "training" / "fraud_detector.parquet",
            )
            client = store.online_client()
            for i in range(10):  # ~500 sampled rows: past the monitor's min_samples
                rows = [
                    {"user_id": u, "merchant_id": f"m_{u % 30:05d}", "amount": 10.0 + u + i}
                    for u in range(100 * (i % 2), 100 * (i % 2) + 100)
                ]
                client.get_online_features(rows, model="fraud_detector")
            client.serving_log.flush()
            run_checks(store, "fraud_detector")
            run_checks(store, "fraud_detector")
            _cred, operator_key = store.create_operator_credential(description="ui tests")
            _cred, model_key = store.create_credential("fraud_detector", description="ui tests")
            training_set = built.record.id
        yield UiRepo(repo, project, operator_key, model_key, training_set)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass(frozen=True)
class UiServer:
    url: str  # http://127.0.0.1:PORT
    world: UiRepo


@pytest.fixture(scope="session")
def ui_server(
    ui_repo: UiRepo, services: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UiServer]:
    """``featurestore ui`` on a free loopback port, for the browser."""
    from featurestore.devservices import free_port

    port = free_port()
    log = tmp_path_factory.mktemp("ui-log") / "ui.log"
    env = {
        **os.environ,
        "FEATURESTORE_REDIS_URL": services.redis_url,
        "FEATURESTORE_KAFKA": services.kafka_bootstrap,
    }
    cli = [sys.executable, "-m", "featurestore.cli", "ui", "-r", str(ui_repo.repo)]
    proc = subprocess.Popen(
        [*cli, "--port", str(port), "--refresh-seconds", "0.2"],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "featurestore ui did not start:\n" + log.read_text()
                    ) from None
                time.sleep(0.2)
        yield UiServer(url, ui_repo)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
