"""An inference service for fraud_detector: features from the store, a score, and the
model's drift status with every prediction.

    FEATURESTORE_REPO=feature_repo FEATURESTORE_API_KEY=fsk_... \\
    FRAUD_MODEL=feature_repo/data/models/fraud_detector.json \\
        uvicorn examples.fraud_inference.app:app_from_env --factory --port 8000

``POST /predict`` with ``{"user_id": 42, "merchant_id": "m_00042", "amount": 120.5}``
(optionally ``transaction_id`` and ``event_timestamp``) looks the features up in process
(one Redis round trip, as the key's model: its policies apply; the amount travels in the
entity row for the on-demand ``amount_vs_1h_avg``), scores, and answers with
the probability, the decision, the mode and the drift status the lookup carried. While the
status is ``drift`` the service scores with the model's declared fallback rule instead:
inputs unlike the training data make the model's scores unreliable. ``GET /metrics``
exposes predictions per mode and the drift status as gauges.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from examples.fraud_inference.model import FraudModel, night
from featurestore import FeatureStore
from featurestore.errors import FeatureStoreError

STATUSES = ("ok", "warn", "drift", "unknown")


def create_app(repo: Path, model_path: Path, api_key: str | None = None) -> FastAPI:
    registry = CollectorRegistry()
    predictions = Counter(
        "fraud_inference_predictions_total",
        "Predictions, by mode (model, or fallback while inputs drift).",
        ["mode"],
        registry=registry,
    )
    drift_status = Gauge(
        "fraud_inference_drift_status",
        "1 for the model's current drift status (as the last lookup carried it).",
        ["status"],
        registry=registry,
    )
    drifting = Gauge(
        "fraud_inference_drifting_features",
        "Features in warn (1) or drift (2).",
        ["feature"],
        registry=registry,
    )
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        store = FeatureStore(repo)
        state["store"] = store
        state["client"] = store.online_client(api_key=api_key, require_key=True)
        state["model"] = FraudModel.load(model_path)
        try:
            yield
        finally:
            state["client"].close()
            store.close()

    app = FastAPI(title="fraud_detector inference (featurestore example)", lifespan=lifespan)

    @app.exception_handler(FeatureStoreError)
    async def store_error(_request: Request, exc: FeatureStoreError) -> Response:
        body = {"error": type(exc).__name__, "detail": str(exc)}
        return Response(orjson.dumps(body), exc.http_status, media_type="application/json")

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        body = orjson.loads(await request.body())
        try:
            amount = float(body["amount"])
            # amount is also a request field: fraud_detector's on-demand feature
            # amount_vs_1h_avg is computed from it and the user's stored 1-hour window.
            row = {
                "user_id": int(body["user_id"]),
                "merchant_id": str(body["merchant_id"]),
                "amount": amount,
            }
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"need user_id (int), merchant_id (str) and amount (number): {exc}"
            return Response(orjson.dumps({"error": "BadRequest", "detail": detail}), 422)
        when = (
            datetime.fromisoformat(body["event_timestamp"])
            if body.get("event_timestamp")
            else datetime.now(UTC)
        )
        response = await state["client"].get_online_features_async([row])
        features = response.rows()[0]
        features.update(amount=amount, night=night(when))
        model: FraudModel = state["model"]
        drift = response.drift or {"status": "unknown"}
        if drift["status"] == "drift":
            mode, probability = "fallback", model.fallback_score(features)
        else:
            mode, probability = "model", model.score(features)
        predictions.labels(mode).inc()
        for status in STATUSES:
            drift_status.labels(status).set(1.0 if status == drift["status"] else 0.0)
        for feature, status in drift.get("features", {}).items():
            drifting.labels(feature).set(2.0 if status == "drift" else 1.0)
        answer = {
            "transaction_id": body.get("transaction_id"),
            "fraud_probability": round(probability, 4),
            "decision": "review" if probability >= model.spec["review_at"] else "approve",
            "mode": mode,
            "drift": drift,
        }
        return Response(orjson.dumps(answer), media_type="application/json")

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app


def app_from_env() -> FastAPI:
    return create_app(
        Path(os.environ.get("FEATURESTORE_REPO", "feature_repo")),
        Path(os.environ.get("FRAUD_MODEL", "feature_repo/data/models/fraud_detector.json")),
        os.environ.get("FEATURESTORE_API_KEY"),
    )
