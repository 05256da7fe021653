"""The UI tests' world: the example repo, materialized, with a training set, drift checks
and an operator's key, served by ``featurestore ui`` on loopback (one per test run)."""

from __future__ import annotations

import subprocess
import sys
import time
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
    with pytest.MonkeyPatch.context() as env:  # undone when the session ends
        env.setenv("FEATURESTORE_REDIS_URL", services.redis_url)
        env.setenv("FEATURESTORE_KAFKA", services.kafka_bootstrap)
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


@dataclass(frozen=True)
class UiServer:
    url: str  # http://127.0.0.1:PORT
    world: UiRepo


@pytest.fixture(scope="session")
def ui_server(ui_repo: UiRepo) -> Iterator[UiServer]:
    """``featurestore ui --detach`` on a free loopback port, for the browser; stopped by
    ``dev down``, as a user stops it (the environment names the test services)."""
    from featurestore.config import load_config
    from featurestore.devservices import down, free_port, status

    port = free_port()
    cli = [sys.executable, "-m", "featurestore.cli", "ui", "-r", str(ui_repo.repo)]
    started = subprocess.run(
        [*cli, "--port", str(port), "--refresh-seconds", "0.2", "--detach"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"http://127.0.0.1:{port}/ui/" in started.stdout
    config = load_config(ui_repo.repo)
    state_dir = config.state_dir
    shown = {s.name: s for s in status(config.redis_url, None, state_dir)}  # `dev status`
    assert (shown["ui"].state, shown["ui"].detail) == ("running", f"http://127.0.0.1:{port}/ui/")
    try:
        yield UiServer(f"http://127.0.0.1:{port}", ui_repo)
    finally:
        stopped = {s.name: s for s in down(state_dir)}
        assert stopped["ui"].state == "stopped", stopped
        assert not (state_dir / "ui.pid").exists()
