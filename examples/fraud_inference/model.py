"""A small fraud model for the example: logistic regression in numpy, trained on a training
set built by featurestore, and the fallback rule it declares for when its inputs drift.

The model file (JSON) holds everything scoring needs: the features in order, how each is
transformed and imputed, the weights, and the declared fallback. Scoring needs only the
standard library, so the inference service stays light.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

# Store features the model reads (names as fraud_detector's lookups return them), and the
# request's own fields (amount, night: the transaction's local hour is not in the store).
STORE_FEATURES = [
    "age",
    "account_age_days",
    "credit_limit",
    "txn_count_30d",
    "avg_ticket_30d",
    "chargeback_rate_30d",
    "count_10m",
    "count_1h",
    "count_1d",
    "amount_sum_10m",
    "amount_sum_1h",
    "amount_sum_1d",
    "amount_max_1d",
    "amount_vs_1h_avg",  # on-demand: computed from the request's amount at each lookup
]
REQUEST_FEATURES = ["amount", "night"]
LOG_SCALED = {
    "credit_limit",
    "txn_count_30d",
    "avg_ticket_30d",
    "count_10m",
    "count_1h",
    "count_1d",
    "amount_sum_10m",
    "amount_sum_1h",
    "amount_sum_1d",
    "amount_max_1d",
    "amount_vs_1h_avg",
    "amount",
}
# Used while the model's inputs drift: review large amounts, approve the rest.
FALLBACK = {"rule": "review_if_amount_over", "threshold": 500.0}
REVIEW_AT = 0.2  # probability from which a transaction goes to review


def night(when: datetime) -> float:
    return 1.0 if when.hour < 5 or when.hour > 22 else 0.0


def _transform(name: str, value: float) -> float:
    return math.log1p(max(value, 0.0)) if name in LOG_SCALED else value


def train(training_set: Path, *, iterations: int = 400, seed: int = 0) -> dict[str, Any]:
    """Fit on a training set written by ``featurestore training-data`` (with the labels'
    ``amount``, ``event_timestamp`` and ``is_fraud``); returns the model (a dict)."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(training_set)
    hours = pc.hour(table.column("event_timestamp")).to_numpy(zero_copy_only=False)
    columns = {
        name: table.column(name).cast("float64").to_numpy(zero_copy_only=False)
        for name in [*STORE_FEATURES, "amount"]
    }
    columns["night"] = ((hours < 5) | (hours > 22)).astype("float64")
    names = STORE_FEATURES + REQUEST_FEATURES
    raw = np.column_stack([columns[n] for n in names])
    present = ~np.isnan(raw)
    counts = present.sum(axis=0)
    impute = np.where(counts > 0, np.where(present, raw, 0).sum(axis=0) / np.maximum(counts, 1), 0)
    raw = np.where(np.isnan(raw), impute, raw)
    x = np.column_stack(
        [
            np.log1p(np.clip(raw[:, i], 0, None)) if n in LOG_SCALED else raw[:, i]
            for i, n in enumerate(names)
        ]
    )
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std == 0, 1.0, std)
    x = (x - mean) / std
    y = table.column("is_fraud").to_numpy(zero_copy_only=False).astype("float64")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    cut = int(len(y) * 0.8)
    fit, hold = order[:cut], order[cut:]
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(iterations):  # gradient descent with a little L2
        p = 1 / (1 + np.exp(-(x[fit] @ w + b)))
        grad = p - y[fit]
        w -= 0.5 * (x[fit].T @ grad / len(fit) + 1e-3 * w)
        b -= 0.5 * grad.mean()
    scores = x[hold] @ w + b
    return {
        "model": "fraud_detector",
        "features": names,
        "impute": impute.tolist(),
        "mean": mean.tolist(),
        "std": std.tolist(),
        "weights": w.tolist(),
        "bias": float(b),
        "rows": len(y),
        "fraud_rate": float(y.mean()),
        "holdout_auc": round(_auc(scores, y[hold]), 4),
        "trained_on": str(training_set),
        "fallback": FALLBACK,
        "review_at": REVIEW_AT,
    }


def _auc(scores: Any, labels: Any) -> float:
    import numpy as np

    ranks = np.argsort(np.argsort(scores)) + 1
    positives = labels == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class FraudModel:
    """Scores one transaction from its looked-up features and its own fields."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.names: list[str] = spec["features"]
        self.fallback: dict[str, Any] = spec["fallback"]

    @classmethod
    def load(cls, path: Path) -> FraudModel:
        return cls(json.loads(path.read_text()))

    def score(self, features: Mapping[str, Any]) -> float:
        s = self.spec
        total = s["bias"]
        for i, name in enumerate(self.names):
            value = features.get(name)
            value = s["impute"][i] if value is None else float(value)
            total += s["weights"][i] * (_transform(name, value) - s["mean"][i]) / s["std"][i]
        return 1 / (1 + math.exp(-total))

    def fallback_score(self, features: Mapping[str, Any]) -> float:
        return 0.9 if float(features["amount"]) > self.fallback["threshold"] else 0.02
