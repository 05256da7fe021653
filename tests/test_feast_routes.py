"""Feast's routes in process (no `feast serve` needed): Feast's encodings, the push seam
wired to a stand-in for the push API, both entrances of the lookup, limits, and a failure
nobody expected. tests/test_feast_http.py compares the answers with Feast's own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from featurestore import FeatureStore
from featurestore.errors import AuthenticationError, EntityInputError
from tests.helpers import write_repo

pytestmark = pytest.mark.services
EPOCH = "1970-01-01T00:00:00Z"
DEFS = """
    from datetime import timedelta

    from featurestore import (
        Entity, FeatureService, FeatureView, Field, Float64, Int64, Model, ParquetSource, String
    )

    user = Entity(name="user", join_key="user_id", dtype=Int64)
    clicks_source = ParquetSource(name="clicks_source", path="data/clicks", timestamp_field="ts")
    user_stats = FeatureView(
        name="user_stats",
        entities=[user],
        source=clicks_source,
        schema=[Field(name="avg_amount", dtype=Float64), Field(name="country", dtype=String)],
        ttl=timedelta(days=1),
    )
    user_clicks = FeatureView(
        name="user_clicks",
        entities=[user],
        source=clicks_source,
        schema=[Field(name="clicks", dtype=Int64)],
    )
    ranking = FeatureService(name="ranking", features=[user_stats])
    ranker = Model(name="ranker", feature_services=[ranking], purpose="ranking", owner="a@x.com")
"""


@dataclass(frozen=True)
class Repo:
    path: Path
    key: str


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, services: Any) -> Repo:
    config = (
        "project: feast_routes\nregistry: data/registry.db\n"
        f"online_store:\n  redis_url: {services.redis_url}\n"
    )
    path = write_repo(
        tmp_path_factory.mktemp("feast_routes") / "repo",
        {"defs.py": DEFS, "featurestore.yaml": config},
    )
    with FeatureStore(path) as store:
        store.apply()
        row = {
            "user_id": pa.array([1, 2], pa.int64()),
            "event_timestamp": pa.array([datetime.now(UTC) - timedelta(minutes=1)] * 2),
            "avg_amount": [10.5, None],
            "country": ["DE", "FR"],
        }
        store.write_online("user_stats", pa.table(row))
        _credential, key = store.create_credential("ranker")
    return Repo(path, key)


def columns(body: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    names = body["metadata"]["feature_names"]
    return dict(zip(names, body["results"], strict=True))


def test_values_and_times_are_encoded_as_feast_encodes_them() -> None:
    """No server needed: what Redis cannot show in the comparison above (NaN, infinities,
    bytes, timestamps, lists, times before 1970, an on-demand function's failure)."""
    from featurestore.online.on_demand import ERROR, OnDemandPlan
    from featurestore.online.plan import LookupPlan
    from featurestore.online.response import EXPIRED, MISSING, PRESENT, OnlineResponse
    from featurestore.serving.feast_format import feast_response, feast_time

    assert feast_time(None) == feast_time(0) == EPOCH
    assert feast_time(1_500_000) == "1970-01-01T00:00:01.500Z"
    assert feast_time(-1) == "1969-12-31T23:59:59.999999Z"  # floored, as protobuf's
    assert feast_time(86_400_000_000) == "1970-01-02T00:00:00Z"
    plan = LookupPlan(
        project="p",
        model=None,
        feature_names=("ratio", "blob", "score", "when", "vector", "x"),
        refs=("od@v1:ratio", "a@v1:blob", "b@v2:score", "a@v1:when", "b@v2:vector", "a@v1:x"),
        dtypes=("float64", "bytes", "float64", "timestamp", "array<float32>", "int64"),
        join_keys=("k",),
        key_reads=(),
        on_demand=OnDemandPlan(steps=(), hidden=(), computed=frozenset({0})),
    )
    at = datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)
    response = OnlineResponse(
        plan,
        [{"k": 1, "other": 2}, {"k": 2, "other": 3}],
        values=[
            [None, 0.5],
            [b"\x00\xff", None],
            [float("nan"), float("-inf")],
            [at, None],
            [[1.0, float("inf")], []],
            [None, None],
        ],
        statuses=[[ERROR, PRESENT]] + [[PRESENT, MISSING]] * 4 + [[EXPIRED, PRESENT]],
        event_us=[[5, 6]] + [[5, None]] * 4 + [[7, 8]],
        errors={0: ["ZeroDivisionError: division by zero", None]},
    )
    body = feast_response(response, ["other", "k"], version_metadata=True)
    assert body["metadata"] == {
        # grouped by view, stored views first: Feast's order
        "feature_names": ["k", "blob", "when", "x", "score", "vector", "ratio"],
        "feature_view_metadata": [
            {"name": "a", "version": 1},
            {"name": "b", "version": 2},
            {"name": "od", "version": 1},
        ],
    }
    got = columns(body)
    assert got["k"]["values"] == [1, 2]
    assert got["blob"]["values"] == ["AP8=", None]
    assert got["score"]["values"] == ["NaN", "-Infinity"]
    assert got["when"]["values"] == [int(at.timestamp()), None]
    assert got["vector"]["values"] == [[1.0, "Infinity"], []]
    assert got["blob"]["statuses"] == ["PRESENT", "NOT_FOUND"]
    assert got["x"]["statuses"] == ["OUTSIDE_MAX_AGE", "NULL_VALUE"]
    times = got["x"]["event_timestamps"]
    assert times == ["1970-01-01T00:00:00.000007Z", "1970-01-01T00:00:00.000008Z"]
    assert got["blob"]["event_timestamps"][1] == EPOCH
    assert got["ratio"] == {
        "values": [None, 0.5],
        "statuses": ["INVALID", "PRESENT"],
        "event_timestamps": [EPOCH, EPOCH],  # Feast gives on-demand features no time
        "errors": ["ZeroDivisionError: division by zero", None],
    }
    assert "errors" not in got["blob"]
    orjson.dumps(body)  # valid JSON: no NaN left


class RecordingPush:
    """A stand-in for the push API (not on main yet) behind the PushTarget seam."""

    def __init__(self, complete: bool = True, refuse: Exception | None = None) -> None:
        self.complete = complete
        self.refuse = refuse
        self.calls: list[tuple[Any, str, str]] = []

    def authenticate(self, api_key: str) -> None:
        if api_key != "push-key":
            raise AuthenticationError("not a push key")

    def push(self, batches: Any, *, to: str, api_key: str) -> bool:
        if self.refuse is not None:
            raise self.refuse
        self.calls.append((batches, to, api_key))
        return self.complete


def test_a_wired_push_sends_every_fed_view_its_rows(repo: Repo) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from featurestore.serving.app import create_app
    from featurestore.serving.feast_api import add_feast_routes

    now = "2026-12-01T10:00:00+00:00"
    body = {"push_source_name": "clicks_source", "df": {"user_id": [1, 2], "ts": [now, now]}}
    with FeatureStore(repo.path) as store:
        server = create_app(feature_store=store).state.server
        for target, status in ((RecordingPush(), 200), (RecordingPush(complete=False), 202)):
            app = FastAPI()
            add_feast_routes(app, server, push=target)
            with TestClient(app) as http:
                headers = {"Authorization": "Bearer push-key"}
                r = http.post("/push", json={**body, "to": "online_and_offline"}, headers=headers)
                assert (r.status_code, r.content) == (status, b"")
                assert http.post("/push", json=body, headers={"X-API-Key": "x"}).status_code == 401
        rows = [{"user_id": u, "event_timestamp": now} for u in (1, 2)]  # the source's "ts"
        fed = [("user_clicks", rows), ("user_stats", rows)]
        assert target.calls == [(fed, "online_and_offline", "push-key")]
        refusing = RecordingPush(refuse=EntityInputError("row 1: 'clicks' must be an integer"))
        app = FastAPI()
        add_feast_routes(app, server, push=refusing)
        with TestClient(app) as http:
            r = http.post("/push", json=body, headers={"Authorization": "Bearer push-key"})
        assert r.status_code == 422
        assert json.loads(r.json())["message"] == "row 1: 'clicks' must be an integer"


def test_the_fast_path_and_the_documented_route_answer_alike(repo: Repo) -> None:
    from fastapi.testclient import TestClient

    from featurestore.serving.app import create_app

    asks = [
        {"features": ["user_stats:avg_amount"], "entities": {"user_id": [1, 99]}},
        {"feature_service": "nope", "entities": {"user_id": [1]}},
        {"features": ["user_stats:avg_amount"], "entities": {"user_id": ["x"]}},
    ]
    answers = {}
    with FeatureStore(repo.path) as store:
        for path in ("fast", "fastapi"):
            app = create_app(feature_store=store)
            if path == "fastapi":
                app.feast_lookup = None  # type: ignore[attr-defined]  # through FastAPI's routing
            with TestClient(app) as http:
                headers = {"Authorization": f"Bearer {repo.key}"}
                answers[path] = [
                    (r.status_code, r.headers["content-type"], r.content)
                    for r in (
                        http.post("/get-online-features", json=a, headers=headers) for a in asks
                    )
                ]
    assert answers["fast"] == answers["fastapi"]
    assert [status for status, _, _ in answers["fast"]] == [200, 404, 422]


def test_the_keys_model_limits_apply(repo: Repo) -> None:
    from fastapi.testclient import TestClient

    from featurestore.serving.app import create_app
    from featurestore.serving.limits import Limit, ServingLimits

    limits = ServingLimits(default=Limit(rows_per_second=0.001, burst_rows=2))
    ask = {"features": ["user_stats:avg_amount"], "entities": {"user_id": [1, 2]}}
    with FeatureStore(repo.path) as store:
        app = create_app(feature_store=store, limits=limits)
        with TestClient(app) as http:
            headers = {"Authorization": f"Bearer {repo.key}"}
            assert http.post("/get-online-features", json=ask, headers=headers).status_code == 200
            r = http.post("/get-online-features", json=ask, headers=headers)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0
    assert json.loads(r.json())["class"] == "RateLimited"


def test_an_unexpected_failure_is_a_feast_shaped_500_with_a_request_id(repo: Repo) -> None:
    import redis
    from fastapi.testclient import TestClient

    from featurestore.serving.app import create_app

    with FeatureStore(repo.path) as store:
        plan = store.online_client(api_key=repo.key).plan(features=["user_stats:country"])
        (reads,) = plan.key_reads
        r = redis.Redis.from_url(store.config.redis_url)
        r.hset(reads.prefix + b"77", reads.fields[0], b"x")  # not a value featurestore wrote
        ask = {"features": ["user_stats:country"], "entities": {"user_id": [77]}}
        headers = {"Authorization": f"Bearer {repo.key}", "X-Request-ID": "feast-1"}
        with TestClient(create_app(feature_store=store), raise_server_exceptions=False) as http:
            response = http.post("/get-online-features", json=ask, headers=headers)
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "feast-1"
    detail = json.loads(response.json())
    assert detail["class"] == "InternalServerError"
    assert "request id feast-1" in detail["message"]
    assert "Traceback" not in response.text
