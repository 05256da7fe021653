"""No surface shows a password from a configured URL: /readyz and the server's answers and
log, lookup and materialization errors, CLI output, registry and Kafka errors.

Every service here is configured with a URL that carries PASSWORD and cannot be reached, so
each surface takes its error path, the one that names the URL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import app
from featurestore.devservices import free_port
from featurestore.errors import OnlineStoreUnavailable, RegistryUnavailable
from featurestore.registry.store import Registry
from tests.helpers import ONLINE_REPO, write_repo
from tests.test_materialize import DEFS, ROWS, write_source
from tests.test_serving import start_server, stop_server

PASSWORD = "s3cret-PW"
runner = CliRunner()


def down_redis() -> str:
    return f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"  # nothing listens there


def repo_on(
    path: Path, files: dict[str, str], redis_url: str, registry: str, kafka: str = ""
) -> Path:
    config = (
        f"project: redact\nregistry: {registry}\nonline_store:\n  redis_url: {redis_url}\n"
        f"kafka:\n  bootstrap_servers: {kafka or f'127.0.0.1:{free_port()}'}\n"
    )
    return write_repo(path, {**files, "featurestore.yaml": config})


def cli(repo: Path, *args: str) -> str:
    result = runner.invoke(app, [*args, "--repo", str(repo)])
    return result.output


def test_the_online_store_password_is_shown_nowhere(tmp_path: Path) -> None:
    url = down_redis()
    repo = repo_on(tmp_path / "online", ONLINE_REPO, url, "data/registry.db")
    with FeatureStore(repo) as store:
        store.apply()
        with pytest.raises(OnlineStoreUnavailable) as lookup:
            store.get_online_features([{"user_id": 1}], features=["user_stats:avg_amount"])
    shown = {"lookup error": str(lookup.value)}
    assert "127.0.0.1" in shown["lookup error"]  # still says where

    server = start_server(repo, "--log-level", "info")
    try:
        ready = server.get("/readyz")
        assert ready.status_code == 503
        shown["/readyz"] = ready.text
        answer = server.post({"features": ["user_stats:avg_amount"], "entities": [{"user_id": 1}]})
        assert answer.status_code == 503
        shown["/v1/features"] = answer.text
        shown["/metrics"] = server.get("/metrics").text
    finally:
        stop_server(server)
    shown["serve output"] = server.proc.stdout.read().decode()  # type: ignore[union-attr]
    assert "Serving" in shown["serve output"]

    shown["dev status"] = cli(repo, "dev", "status")
    shown["dev status --json"] = cli(repo, "dev", "status", "--json")
    assert [where for where, text in shown.items() if PASSWORD in text] == []


def test_a_failed_materialization_shows_no_password(tmp_path: Path) -> None:
    repo = repo_on(tmp_path / "mat", {"defs.py": DEFS}, down_redis(), "data/registry.db")
    with FeatureStore(repo) as store:
        store.apply()
        write_source(store, ROWS)
    shown = {"materialize": cli(repo, "materialize", "user_stats", "--engine", "local")}
    assert "unreachable" in shown["materialize"]
    shown["runs"] = cli(repo, "runs", "--json")
    assert json.loads(shown["runs"])[0]["status"] == "failed"
    assert [where for where, text in shown.items() if PASSWORD in text] == []


def test_registry_and_kafka_errors_show_no_password(tmp_path: Path) -> None:
    registry = f"postgresql+psycopg://fs:{PASSWORD}@127.0.0.1:{free_port()}/registry"
    with pytest.raises(RegistryUnavailable) as direct:
        Registry(registry).serial("redact")
    shown = {"registry error": str(direct.value)}
    assert "127.0.0.1" in shown["registry error"]
    kafka = f"SASL_SSL://u:{PASSWORD}@127.0.0.1:{free_port()}"
    repo = repo_on(tmp_path / "pg", {"defs.py": DEFS}, down_redis(), registry, kafka)
    shown["plan"] = cli(repo, "plan")
    assert "error:" in shown["plan"]
    shown["audit verify"] = cli(repo, "audit", "verify")
    shown["dev status"] = cli(repo, "dev", "status")  # refused: not HOST:PORT

    from featurestore.streaming.consumer import StreamError, reader

    with pytest.raises(StreamError) as kafka:
        reader(f"SASL_SSL://u:{PASSWORD}@127.0.0.1:{free_port()}", bootstrap_timeout_ms=500)
    shown["stream error"] = str(kafka.value)
    assert "127.0.0.1" in shown["stream error"]
    assert [where for where, text in shown.items() if PASSWORD in text] == []


def test_featurestore_processes_redact_third_party_log_records() -> None:
    """kafka-python logs its bootstrap servers verbatim; the CLI and the server's workers
    install ``redact_logs`` (here in a process of its own: it changes global logging)."""
    script = (
        "import logging, sys\n"
        "from featurestore.urls import redact_logs\n"
        "redact_logs()\n"
        "logging.getLogger('kafka.net.manager').error('Unable to bootstrap from %s', sys.argv[1])\n"
        "logging.getLogger('other').warning('plain %s message', 'old')\n"
    )
    url = f"SASL_SSL://u:{PASSWORD}@127.0.0.1:9093,SASL_SSL://u:{PASSWORD}@h2:9093"
    done = subprocess.run(
        [sys.executable, "-c", script, url], capture_output=True, text=True, check=True
    )
    assert done.stderr.splitlines() == [
        "Unable to bootstrap from SASL_SSL://u:***@127.0.0.1:9093,SASL_SSL://u:***@h2:9093",
        "plain old message",
    ]
