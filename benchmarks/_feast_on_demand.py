"""Feast's side of ``benchmarks/on_demand.py``: run in an interpreter with Feast 0.67.

    python _feast_on_demand.py --repo DIR --redis HOST:PORT,db=N --data DIR --batches FILE

Applies the fraud-like repo (the same three views over the same Parquet files, a
``RequestSource`` and the same on-demand function in python mode, one row's dict in and
out (``singleton=True``), and in pandas mode), writes the rows to Redis with
``write_to_online_store``, then times ``get_online_features`` without the on-demand
feature, with the python-mode one and with the pandas-mode one, in interleaved rounds,
on the batches featurestore used. Prints JSON on stdout (progress on stderr); imports
only Feast and what Feast pulls in.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from _feast_repo import write_config

# view -> (entity, [(feature, dtype)]): the shape of on_demand.py's VIEWS
VIEWS: dict[str, tuple[str, list[tuple[str, str]]]] = {}


def definitions(data: Path) -> list[Any]:
    from feast import Entity, FeatureView, Field, FileSource, RequestSource, ValueType
    from feast.on_demand_feature_view import on_demand_feature_view
    from feast.types import Float64, Int64, String

    types = {"int64": Int64, "float64": Float64, "string": String}
    entities = {
        "user_id": Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64),
        "merchant_id": Entity(
            name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING
        ),
    }
    views = {}
    for name, (key, features) in VIEWS.items():
        views[name] = FeatureView(
            name=name,
            entities=[entities[key]],
            ttl=timedelta(days=7),
            schema=[Field(name=f, dtype=types[t]) for f, t in features],
            source=FileSource(
                name=f"{name}_source",
                path=str((data / f"{name}.parquet").resolve()),
                timestamp_field="event_timestamp",
            ),
            online=True,
        )
    txn = RequestSource(name="txn", schema=[Field(name="amount", dtype=Float64)])
    inputs = views["user_txn_stats"][["amount_sum_1h", "count_1h"]]

    @on_demand_feature_view(
        sources=[inputs, txn],
        schema=[Field(name="amount_over_avg_1h", dtype=Float64)],
        mode="python",
        singleton=True,
    )
    def amount_vs_avg_1h(row: dict[str, Any]) -> dict[str, Any]:
        count, total, amount = row["count_1h"], row["amount_sum_1h"], row["amount"]
        if not count or total is None or amount is None:
            return {"amount_over_avg_1h": None}
        return {"amount_over_avg_1h": amount / (total / count)}

    @on_demand_feature_view(
        sources=[inputs, txn],
        schema=[Field(name="amount_over_avg_1h_pd", dtype=Float64)],
        mode="pandas",
    )
    def amount_vs_avg_1h_pd(df):  # type: ignore[no-untyped-def]  # Feast evaluates hints
        import pandas as pd

        out = pd.DataFrame()
        avg = df["amount_sum_1h"] / df["count_1h"].where(df["count_1h"] > 0)
        out["amount_over_avg_1h_pd"] = df["amount"] / avg
        return out

    return [*entities.values(), *views.values(), txn, amount_vs_avg_1h, amount_vs_avg_1h_pd]


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 4),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 4),
        "calls": len(ordered),
    }


def interleave(
    cases: dict[str, Callable[[int], Any]], count: int, rounds: int, seed: int
) -> dict[str, Any]:
    """As on_demand.py's: shuffled rounds, wall percentiles and CPU per call."""
    rng = random.Random(seed)
    for fn in cases.values():
        for i in range(min(100, count)):
            fn(i)
    samples: dict[str, list[float]] = {k: [] for k in cases}
    cpu = dict.fromkeys(cases, 0.0)
    per = max(1, count // rounds)
    order = list(cases)
    for k in range(rounds):
        rng.shuffle(order)
        for name in order:
            fn, got = cases[name], samples[name]
            c0 = time.process_time()
            for i in range(k * per, (k + 1) * per):
                t0 = time.perf_counter()
                fn(i)
                got.append(time.perf_counter() - t0)
            cpu[name] += time.process_time() - c0
    return {
        name: {**percentiles(s), "cpu_us_per_call": round(cpu[name] / len(s) * 1e6, 1)}
        for name, s in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--redis", required=True, help="host:port[,db=N]")
    parser.add_argument("--data", required=True, help="the views' Parquet files and views.json")
    parser.add_argument("--batches", required=True, help="JSON: {n: [[row, ...], ...]}")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    import pyarrow.parquet as pq
    from feast import FeatureStore

    data = Path(args.data)
    VIEWS.update({k: (v[0], [tuple(f) for f in v[1]]) for k, v in json.loads(
        (data / "views.json").read_text()).items()})  # fmt: skip
    root = Path(args.repo)
    write_config(root, "odbench", redis=args.redis)
    store = FeatureStore(repo_path=str(root))
    store.apply(definitions(data))
    setup: dict[str, Any] = {}
    for name in VIEWS:
        df = pq.read_table(data / f"{name}.parquet").to_pandas()
        start = time.perf_counter()
        store.write_to_online_store(name, df)
        setup[f"{name}_write_s"] = round(time.perf_counter() - start, 2)
    plain = [f"{v}:{f}" for v, (_k, fs) in VIEWS.items() for f, _t in fs]
    refs = {
        "without": plain,
        "with_python": [*plain, "amount_vs_avg_1h:amount_over_avg_1h"],
        "with_pandas": [*plain, "amount_vs_avg_1h_pd:amount_over_avg_1h_pd"],
    }
    batches = json.loads(Path(args.batches).read_text())
    out: dict[str, Any] = {"setup": setup, "load_average": {}}
    for n, rows in batches.items():
        out["load_average"][f"{n}_entities"] = [round(x, 2) for x in os.getloadavg()]
        cases = {
            name: (lambda i, f=features, rows=rows: store.get_online_features(f, rows[i]))
            for name, features in refs.items()
        }
        out[f"{n}_entities"] = interleave(cases, len(rows), args.rounds, args.seed)
        print(f"feast {n} entities: {out[f'{n}_entities']}", file=sys.stderr, flush=True)
    probe_rows = [b[0] for b in batches["1"][:20]]
    out["probe"] = {
        name: [store.get_online_features(features, [row]).to_dict() for row in probe_rows]
        for name, features in refs.items()
        if name != "without"
    }
    import feast

    out["feast_version"] = feast.__version__
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
