"""POST /v1/features has two entrances: the bare ASGI endpoint the server answers it with,
and the FastAPI route that documents it (and answers should a request reach FastAPI).
They must answer alike, errors included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from featurestore import FeatureStore
from featurestore.serving.app import create_app
from tests.helpers import online_repo
from tests.test_online_store import ago, user_stats

pytestmark = pytest.mark.services

ASKS: list[tuple[str, dict[str, str] | None, bytes]] = [
    ("ok", None, b'{"features": ["user_stats:avg_amount"], "entities": [{"user_id": 1}]}'),
    ("no key", {}, b'{"features": ["user_stats:avg_amount"], "entities": [{"user_id": 1}]}'),
    ("not JSON", None, b"{nope"),
    ("unknown field", None, b'{"entity": []}'),
    ("too many bytes", None, b'{"entities": [], "pad": "' + b"x" * 2000 + b'"}'),
]


def test_the_fast_path_and_the_documented_route_answer_alike(tmp_path: Path, services: Any) -> None:
    repo = online_repo(tmp_path / "repo", services.redis_url, "routes")
    with FeatureStore(repo) as store:
        store.apply()
        store.write_online("user_stats", user_stats([1], [ago(minutes=1)], [7.0]))
        _credential, key = store.create_credential("fraud_model")
        answers: dict[str, list[tuple[int, dict[str, str], Any]]] = {}
        counted: dict[str, float] = {}
        for path in ("fast", "fastapi"):
            app = create_app(feature_store=store, max_body_bytes=1000)
            if path == "fastapi":
                app.lookup = None  # type: ignore[attr-defined]  # through FastAPI's routing
            with TestClient(app) as http:
                before = _invalid_json_errors(http.get("/metrics").text)
                answers[path] = []
                for _name, headers, body in ASKS:
                    sent = {"Authorization": f"Bearer {key}"} if headers is None else headers
                    r = http.post("/v1/features", content=body, headers=sent)
                    kept = {
                        h: r.headers[h]
                        for h in ("content-type", "www-authenticate")
                        if h in r.headers
                    }
                    answers[path].append((r.status_code, kept, r.json()))
                counted[path] = _invalid_json_errors(http.get("/metrics").text) - before
    assert counted == {"fast": 1, "fastapi": 1}  # each path counts its errors
    assert answers["fast"] == answers["fastapi"]
    statuses = [status for status, _, _ in answers["fast"]]
    assert statuses == [200, 401, 400, 422, 413]
    assert answers["fast"][0][2]["results"][0]["values"] == [7.0]
    assert answers["fast"][1][1]["www-authenticate"] == 'Bearer realm="featurestore"'


def _invalid_json_errors(metrics: str) -> float:
    line = 'featurestore_request_errors_total{error="InvalidJSON",status="400"} '
    return sum(float(s[len(line) :]) for s in metrics.splitlines() if s.startswith(line))
