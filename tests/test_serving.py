"""The HTTP feature server as a real process (two workers) against a real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pyarrow as pa
import pytest

from featurestore import FeatureStore
from featurestore.devservices import free_port
from featurestore.errors import ObjectNotFound
from tests.helpers import online_repo, replace_in_file
from tests.test_online_store import start_redis, user_stats

pytestmark = pytest.mark.services


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    repo: Path
    key: str | None = None  # sent with every post unless headers= says otherwise

    def post(self, body: Any, **kwargs: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        if self.key is not None:
            kwargs.setdefault("headers", {"Authorization": f"Bearer {self.key}"})
        return httpx.post(f"{self.url}/v1/features", content=content, timeout=10, **kwargs)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=10)


def start_server(repo: Path, *args: str, model: str | None = "fraud_model") -> Server:
    """``featurestore serve`` on ``repo``; posts carry a new key of ``model``."""
    key = None
    if model is not None:
        with FeatureStore(repo) as store:
            _credential, key = store.create_credential(model, description="tests")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "featurestore.cli",
            "serve",
            "--repo",
            str(repo),
            "--port",
            str(port),
            "--refresh-seconds",
            "0.2",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    server = Server(f"http://127.0.0.1:{port}", proc, repo, key)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read().decode()}")  # type: ignore[union-attr]
        try:
            if server.get("/healthz").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start within 30 s")


def stop_server(server: Server) -> None:
    server.proc.send_signal(signal.SIGINT)
    try:
        server.proc.wait(15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(5)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, services: Any) -> Iterator[Server]:
    repo = online_repo(tmp_path_factory.mktemp("serving") / "repo", services.redis_url, "served")
    with FeatureStore(repo) as store:
        store.apply()
        now = datetime.now(UTC)
        store.write_online(
            "user_stats", user_stats([1, 2], [now - timedelta(minutes=1)] * 2, [10.0, 20.0])
        )
        store.write_online(
            "merchant_stats",
            pa.table(
                {
                    "merchant_id": ["m1"],
                    "event_timestamp": pa.array([now], pa.timestamp("us", tz="UTC")),
                    "chargeback_rate": [0.5],
                }
            ),
        )
    server = start_server(repo, "--workers", "2", "--max-entities", "10")
    yield server
    stop_server(server)


ROWS = [{"user_id": 1, "merchant_id": "m1"}, {"user_id": 3, "merchant_id": "m1"}]


def test_lookup_answers_what_the_in_process_client_answers(served: Server) -> None:
    response = served.post({"model": "fraud_model", "entities": ROWS})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with FeatureStore(served.repo) as store:
        local = store.get_online_features(ROWS, model="fraud_model", api_key=served.key)
    assert response.json() == orjson.loads(local.to_json())
    body = response.json()
    names = body["metadata"]["feature_names"]
    avg = body["results"][names.index("avg_amount")]
    assert avg["values"] == [10.0, None]
    assert avg["statuses"] == ["present", "missing"]
    assert avg["event_timestamps"][0].endswith("Z")
    assert body["entities"] == {"user_id": [1, 3], "merchant_id": ["m1", "m1"]}


def test_columns_and_feature_lists_are_accepted(served: Server) -> None:
    response = served.post(
        {
            "features": ["user_stats:avg_amount"],
            "entities": {"user_id": [2, 1]},
            "full_feature_names": True,
        }
    )
    assert response.status_code == 200
    body = response.json()
    assert body["metadata"]["feature_names"] == ["user_stats__avg_amount"]
    assert body["results"][0]["values"] == [20.0, 10.0]


BAD_REQUESTS = {
    "another model": (
        {"model": "fraud_modl", "entities": ROWS},
        403,
        "belongs to model 'fraud_model'",
    ),
    "unknown feature": (
        {"features": ["user_stats:avg"], "entities": ROWS},
        404,
        "no feature 'avg'",
    ),
    "unknown version": (
        {"features": ["user_stats@v3:avg_amount"], "entities": ROWS},
        404,
        "no version v3",
    ),
    "wrong key type": (
        {"model": "fraud_model", "entities": [{"user_id": "1", "merchant_id": "m1"}]},
        422,
        "key 'user_id': expected an integer",
    ),
    "missing key": (
        {"model": "fraud_model", "entities": [{"user_id": 1}]},
        422,
        "no 'merchant_id'",
    ),
    "empty": ({"model": "fraud_model", "entities": []}, 422, "at least one"),
    "no entities": ({"model": "fraud_model"}, 422, 'no "entities"'),
    "unknown field": (
        {"model": "fraud_model", "entity": ROWS},
        422,
        "Did you mean 'entities'",
    ),
    "model not a string": ({"model": 5, "entities": ROWS}, 422, "must be a string"),
    "too many rows": (
        {"model": "fraud_model", "entities": [ROWS[0]] * 11},
        413,
        "limit is 10",
    ),
    "not JSON": (b"{nope", 400, "not valid JSON"),
    "not an object": (b"[1, 2]", 400, "must be a JSON object"),
    "too many bytes": (
        b'{"model": "fraud_model", "entities": [], "pad": "' + b"x" * (2 << 20) + b'"}',
        413,
        "limit is 1048576",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_a_4xx_naming_the_problem(served: Server, case: str) -> None:
    body, status, message = BAD_REQUESTS[case]
    response = served.post(body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert response.json()["error"]


def test_health_readiness_docs_and_metrics(served: Server) -> None:
    assert served.get("/healthz").json() == {"status": "ok"}
    ready = served.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["redis"] == "ok"
    assert ready.json()["registry"] == "ok"
    assert "swagger" in served.get("/docs").text.lower()
    spec = served.get("/openapi.json").json()
    assert "/v1/features" in spec["paths"]
    schema = spec["paths"]["/v1/features"]["post"]["requestBody"]["content"]["application/json"]
    assert "entities" in schema["schema"]["properties"]

    for _ in range(6):  # spread over both workers
        assert served.post({"model": "fraud_model", "entities": ROWS}).status_code == 200
    served.post({"model": "fraud_modl", "entities": ROWS})
    lookups = (
        'featurestore_feature_lookups_total{decision="allow",'
        'feature="user_stats@v1:avg_amount",model="fraud_model"}'
    )
    deadline = time.monotonic() + 10  # each worker adds its counts every refresh
    while (samples := _samples(served))[lookups] < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert samples[lookups] >= 6
    values = lookups.replace("lookups", "values")
    assert samples[values] >= 12
    assert samples['featurestore_lookups_total{model="fraud_model"}'] >= 6
    assert samples['featurestore_lookup_entity_rows_total{model="fraud_model"}'] >= 12
    assert samples['featurestore_request_duration_seconds_count{model="fraud_model"}'] >= 6
    # The histogram is whole: cumulative buckets ending at the count, and a sum.
    latency = "featurestore_request_duration_seconds"
    buckets = [
        v
        for k, v in samples.items()
        if k.startswith(f"{latency}_bucket{{") and 'model="fraud_model"' in k
    ]
    assert len(buckets) == 13
    assert buckets == sorted(buckets)
    assert buckets[-1] == samples[f'{latency}_count{{model="fraud_model"}}']
    assert 0 < samples[f'{latency}_sum{{model="fraud_model"}}'] < 10 * buckets[-1]
    assert samples['featurestore_request_errors_total{error="AccessDeniedError",status="403"}'] >= 1


def _write_calls(pid: int) -> int:
    """write-type system calls made so far by the server's processes (/proc/PID/io)."""
    total = 0
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        fields = dict(
            line.split(": ") for line in Path(f"/proc/{proc.pid}/io").read_text().splitlines()
        )
        total += int(fields["syscw"])
    return total


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's /proc/PID/io")
def test_a_lookup_costs_the_server_one_write_to_redis_and_one_answer(served: Server) -> None:
    """An answer's head and body leave in one system call, as do a lookup's commands."""
    body = orjson.dumps({"model": "fraud_model", "entities": ROWS})
    headers = {"Authorization": f"Bearer {served.key}"}
    n = 200
    with httpx.Client(base_url=served.url, timeout=10) as http:  # one kept-alive connection
        for _ in range(10):
            http.post("/v1/features", content=body, headers=headers)
        before = _write_calls(served.proc.pid)
        for _ in range(n):
            assert http.post("/v1/features", content=body, headers=headers).status_code == 200
        writes = _write_calls(served.proc.pid) - before
    assert writes <= 2.2 * n, writes / n  # (some slack for the background refreshes)


def _samples(served: Server) -> dict[str, float]:
    text = served.get("/metrics").text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_new_models_and_their_keys_are_picked_up_without_a_restart(served: Server) -> None:
    with FeatureStore(served.repo) as store, pytest.raises(ObjectNotFound, match="new_model"):
        store.create_credential("new_model")  # a key needs a registered model
    defs = served.repo / "defs.py"
    original = defs.read_text()
    try:
        replace_in_file(
            defs,
            "fraud_model = Model(",
            'new_model = Model(name="new_model", feature_services=[fraud], owner="x", '
            'purpose="fraud")\n'
            "fraud_model = Model(",
        )
        with FeatureStore(served.repo) as store:
            store.apply()
            _credential, key = store.create_credential("new_model")
        ask = {"entities": [{"user_id": 1}]}  # the key's model, by default
        # Known within a refresh: the request then lacks merchant_id.
        assert _poll(served, ask, key, until=lambda s: s == 422) == 422
    finally:
        defs.write_text(original)
        with FeatureStore(served.repo) as store:
            store.apply()
    # The key's model was removed: its key reads nothing.
    assert _poll(served, ask, key, until=lambda s: s == 403) == 403


def _poll(served: Server, body: Any, key: str, until: Any) -> int:
    """Post until ``until(status)`` holds (workers refresh at their own pace)."""
    deadline = time.monotonic() + 10
    headers = {"Authorization": f"Bearer {key}"}
    while not until(status := served.post(body, headers=headers).status_code):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return status


def test_redis_down_gives_503_and_the_server_recovers_by_itself(tmp_path: Path) -> None:
    port = free_port()
    redis_proc = start_redis(port)
    repo = online_repo(tmp_path / "repo", f"redis://127.0.0.1:{port}/0", "restart")
    with FeatureStore(repo) as store:
        store.apply()
    server = start_server(repo)
    ask = {"features": ["user_stats:avg_amount"], "entities": [{"user_id": 1}]}
    try:
        assert server.post(ask).status_code == 200
        redis_proc.terminate()
        redis_proc.wait(10)
        down = server.post(ask)
        assert down.status_code == 503
        assert f"127.0.0.1:{port}" in down.json()["detail"]
        assert down.json()["error"] == "OnlineStoreUnavailable"
        assert server.get("/readyz").status_code == 503
        assert server.get("/healthz").status_code == 200
        redis_proc = start_redis(port)
        with FeatureStore(repo) as store:
            now = datetime.now(UTC)
            store.write_online("user_stats", user_stats([1], [now], [4.0]))
        back = server.post(ask)
        assert back.status_code == 200
        assert back.json()["results"][0]["values"] == [4.0]
        assert server.get("/readyz").status_code == 200
    finally:
        stop_server(server)
        redis_proc.terminate()
        redis_proc.wait(10)


def test_the_committed_openapi_schema_is_current(served: Server) -> None:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / "openapi.py"
    spec = importlib.util.spec_from_file_location("openapi_script", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.OUT.read_text() == module.render(), "run scripts/openapi.py"
    live = served.get("/openapi.json").json()
    assert live["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert live["paths"]["/v1/features"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "security" not in live["paths"]["/healthz"]["get"]
