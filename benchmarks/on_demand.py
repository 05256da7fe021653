"""What an on-demand feature costs a lookup, side by side in one run on one Redis.

A generated repo of the example's shape (``fraud_detector``): ``user_profile`` (4
features), ``merchant_stats`` (4) and ``user_txn_stats`` (7) on two entities (10,000
users, 1,000 merchants), and one on-demand feature, ``amount_over_avg_1h``: the request's
``amount`` (a ``RequestSource`` field) over the user's 1-hour average
(``amount_sum_1h / count_1h``, two stored features). Three models read the same 15
stored features: ``fraud_plain`` without the on-demand feature, ``fraud_python`` with it
in python mode (one row's dict in, a dict out) and ``fraud_pandas`` with the same
function in pandas mode. Every case looks up the same entity rows (keys and amount) in
the same order; rounds are interleaved and shuffled, so machine noise hits every case
alike. Parts:

  * in-process ``OnlineClient.get_online_features``: p50/p99 and CPU per lookup
    (``time.process_time``), at 1 and 100 entities; ratios with/without, pandas/python;
  * HTTP: ``featurestore serve`` (1 worker, on loopback, started here), sequential
    requests on one keep-alive connection (``http.client``), 1 entity: client-side
    p50/p99 and the server's CPU per request (psutil), with/without;
  * Feast 0.67's SDK ``get_online_features`` on the same rows, written to the same Redis
    (db 1) with ``write_to_online_store``, with an ``@on_demand_feature_view`` over a
    ``RequestSource`` in python mode (``singleton=True``) and pandas mode, timed the same
    way in Feast's interpreter (``_feast_on_demand.py``); ratios featurestore/Feast.

``os.getloadavg()`` is recorded at the start of each part. One run takes about 1.5
minutes, Feast included.

    python benchmarks/on_demand.py
    python benchmarks/on_demand.py --quick --skip-feast   # seconds: a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _interleaved import bench_redis, bench_repo, log, machine, percentiles, write_result
from online_lookup import wait_port

from featurestore.devservices import free_port

ROOT = Path(__file__).resolve().parent
USERS = 10_000
MERCHANTS = 1_000

# view -> (join key, [(feature, dtype)]), as in feature_repo/ (fraud_features)
VIEWS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "user_profile": (
        "user_id",
        [("age", "int64"), ("country", "string"), ("account_age_days", "int64"),
         ("credit_limit", "float64")],
    ),
    "merchant_stats": (
        "merchant_id",
        [("category", "string"), ("txn_count_30d", "int64"), ("avg_ticket_30d", "float64"),
         ("chargeback_rate_30d", "float64")],
    ),
    "user_txn_stats": (
        "user_id",
        [("count_10m", "int64"), ("count_1h", "int64"), ("count_1d", "int64"),
         ("amount_sum_10m", "float64"), ("amount_sum_1h", "float64"),
         ("amount_sum_1d", "float64"), ("amount_max_1d", "float64")],
    ),
}  # fmt: skip

REPO_DEFS = """\
from datetime import timedelta

from featurestore import (
    Entity, FeatureService, FeatureView, Field, Float64, Int64, Model, ParquetSource,
    RequestSource, String, on_demand_feature_view,
)

user = Entity(name="user", join_key="user_id", dtype=Int64)
merchant = Entity(name="merchant", join_key="merchant_id", dtype=String)
TYPES = {"int64": Int64, "float64": Float64, "string": String}
ENTITIES = {"user_id": user, "merchant_id": merchant}
VIEWS = %(views)r
views = {
    name: FeatureView(
        name=name,
        entities=[ENTITIES[key]],
        source=ParquetSource(name=f"{name}_source", path=f"data/{name}"),
        schema=[Field(name=f, dtype=TYPES[t]) for f, t in features],
        ttl=timedelta(days=7),
    )
    for name, (key, features) in VIEWS.items()
}
user_profile, merchant_stats, user_txn_stats = views.values()
txn = RequestSource(name="txn", schema=[Field(name="amount", dtype=Float64)])


@on_demand_feature_view(
    sources=[user_txn_stats[["amount_sum_1h", "count_1h"]], txn],
    schema=[Field(name="amount_over_avg_1h", dtype=Float64)],
)
def amount_vs_avg_1h(row):
    count, total, amount = row["count_1h"], row["amount_sum_1h"], row["amount"]
    if not count or total is None or amount is None:
        return {"amount_over_avg_1h": None}
    return {"amount_over_avg_1h": amount / (total / count)}


@on_demand_feature_view(
    sources=[user_txn_stats[["amount_sum_1h", "count_1h"]], txn],
    schema=[Field(name="amount_over_avg_1h_pd", dtype=Float64)],
    mode="pandas",
)
def amount_vs_avg_1h_pd(df):
    import pandas as pd

    out = pd.DataFrame()
    avg = df["amount_sum_1h"] / df["count_1h"].where(df["count_1h"] > 0)
    out["amount_over_avg_1h_pd"] = df["amount"] / avg
    return out


fraud_features = FeatureService(name="fraud_features", features=list(views.values()))
od_python = FeatureService(name="od_python", features=[amount_vs_avg_1h])
od_pandas = FeatureService(name="od_pandas", features=[amount_vs_avg_1h_pd])
fraud_plain = Model(name="fraud_plain", feature_services=[fraud_features], owner="bench",
    purpose="fraud")
fraud_python = Model(name="fraud_python", feature_services=[fraud_features, od_python],
    owner="bench", purpose="fraud")
fraud_pandas = Model(name="fraud_pandas", feature_services=[fraud_features, od_pandas],
    owner="bench", purpose="fraud")
""" % {"views": VIEWS}  # noqa: UP031 (the repo file is itself Python with braces)

MODELS = {"without": "fraud_plain", "with_python": "fraud_python", "with_pandas": "fraud_pandas"}


def merchant_id(i: int) -> str:
    return f"m_{i:05d}"


def view_rows(seed: int) -> dict[str, pa.Table]:
    """Each view's rows: every user / merchant once, event times within the last hour."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    out = {}
    for name, (key, features) in VIEWS.items():
        n = USERS if key == "user_id" else MERCHANTS
        keys = np.arange(n, dtype=np.int64)
        columns: dict[str, Any] = {
            key: pa.array(keys) if key == "user_id" else pa.array([merchant_id(i) for i in keys]),
            "event_timestamp": pa.array(
                [now - timedelta(seconds=int(s)) for s in rng.integers(0, 3600, n)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
        for f, dtype in features:
            if dtype == "int64":
                # count_1h is 0 for some users: the function's no-average branch runs too
                columns[f] = pa.array(rng.integers(0, 40, n), pa.int64())
            elif dtype == "float64":
                columns[f] = pa.array(np.round(rng.gamma(2.0, 50.0, n), 2))
            else:
                choices = ["DE", "FR", "GB", "NL", "ES", "IT", "US", "PL"]
                columns[f] = pa.array([choices[i] for i in rng.integers(0, 8, n)])
        out[name] = pa.table(columns)
    return out


def entity_batches(seed: int, n: int, count: int) -> list[list[dict[str, Any]]]:
    """``count`` lookups of ``n`` entity rows: user, merchant and the request's amount."""
    rng = random.Random(seed + n)
    return [
        [
            {
                "user_id": rng.randrange(USERS),
                "merchant_id": merchant_id(rng.randrange(MERCHANTS)),
                "amount": round(rng.uniform(1, 500), 2),
            }
            for _ in range(n)
        ]
        for _ in range(count)
    ]


def interleave(
    cases: dict[str, Callable[[int], Any]],
    count: int,
    rounds: int,
    seed: int,
    cpu_of: Callable[[], float] = time.process_time,
) -> dict[str, Any]:
    """Each case called for i in 0..count-1 (every case gets the same inputs), in
    ``rounds`` shuffled rounds: wall percentiles and CPU (``cpu_of``) per call."""
    rng = random.Random(seed)
    for fn in cases.values():  # warm up: plans compiled, functions rebuilt, pandas imported
        for i in range(min(200, count)):
            fn(i)
    samples: dict[str, list[float]] = {k: [] for k in cases}
    cpu = dict.fromkeys(cases, 0.0)
    per = max(1, count // rounds)
    order = list(cases)
    for k in range(rounds):
        rng.shuffle(order)
        for name in order:
            fn, got = cases[name], samples[name]
            c0 = cpu_of()
            for i in range(k * per, (k + 1) * per):
                t0 = time.perf_counter()
                fn(i)
                got.append(time.perf_counter() - t0)
            cpu[name] += cpu_of() - c0
    return {
        name: {**percentiles(s), "cpu_us_per_call": round(cpu[name] / len(s) * 1e6, 1)}
        for name, s in samples.items()
    }


def ratios(stats: dict[str, Any], pairs: dict[str, tuple[str, str]]) -> dict[str, float]:
    out = {}
    for label, (a, b) in pairs.items():
        for key in ("p50_ms", "p99_ms", "cpu_us_per_call"):
            if key in stats[a] and key in stats[b]:
                out[f"{label}_{key.split('_')[0]}"] = round(stats[a][key] / stats[b][key], 3)
    return out


PAIRS = {
    "with_python_over_without": ("with_python", "without"),
    "with_pandas_over_without": ("with_pandas", "without"),
    "pandas_over_python": ("with_pandas", "with_python"),
}


def in_process(store: Any, batches: dict[int, list], rounds: int, seed: int) -> dict[str, Any]:
    client = store.online_client()
    out: dict[str, Any] = {}
    for n, rows in batches.items():
        load = [round(x, 2) for x in os.getloadavg()]
        cases = {
            name: (lambda i, m=model, rows=rows: client.get_online_features(rows[i], model=m))
            for name, model in MODELS.items()
        }
        stats = interleave(cases, len(rows), rounds, seed)
        out[f"{n}_entities"] = {"load_average": load, **stats, "ratios": ratios(stats, PAIRS)}
        log(f"in-process {n} entities: {out[f'{n}_entities']}")
    client.close()
    return out


def probe(store: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The on-demand values of both modes for ``rows``, and a check against the function
    computed here from the looked-up inputs."""
    client = store.online_client()
    python = client.get_online_features(rows, model="fraud_python").to_dict()
    pandas = client.get_online_features(rows, model="fraud_pandas").to_dict()
    client.close()
    expected = []
    for row, count, total in zip(rows, python["count_1h"], python["amount_sum_1h"], strict=True):
        expected.append(row["amount"] / (total / count) if count and total is not None else None)
    return {
        "rows": rows,
        "python": python["amount_over_avg_1h"],
        "pandas": pandas["amount_over_avg_1h_pd"],
        "python_equals_expected": python["amount_over_avg_1h"] == expected,
        "pandas_equals_python": _same(
            pandas["amount_over_avg_1h_pd"], python["amount_over_avg_1h"]
        ),
    }


def _same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and math.isclose(x, y))
        for x, y in zip(a, b, strict=True)
    )


# -- HTTP ------------------------------------------------------------------------------


def server_cpu(pid: int) -> Callable[[], float]:
    """CPU seconds used so far by the server process and its children (its workers), from
    every thread's /proc/*/task/*/schedstat (nanoseconds: psutil's clock ticks of 10 ms
    are too coarse for one round of requests)."""
    import psutil

    proc = psutil.Process(pid)

    def total() -> float:
        ns = 0
        for p in [proc, *proc.children(recursive=True)]:
            for task in Path(f"/proc/{p.pid}/task").glob("*/schedstat"):
                # a thread may end between the listing and the read
                with contextlib.suppress(OSError, IndexError, ValueError):
                    ns += int(task.read_text().split()[0])
        return ns / 1e9

    return total


def over_http(repo: Path, keys: dict[str, str], rows: list, rounds: int, seed: int) -> Any:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "featurestore.cli", "serve", "--repo", str(repo), "--port",
         str(port), "--workers", "1"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        wait_port(port)
        conns = {name: http.client.HTTPConnection("127.0.0.1", port) for name in MODELS}
        bodies = {
            name: [json.dumps({"model": MODELS[name], "entities": b}).encode() for b in rows]
            for name in MODELS
        }

        def post(name: str, i: int) -> bytes:
            conn = conns[name]
            conn.request(
                "POST",
                "/v1/features",
                body=bodies[name][i],
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {keys[name]}",
                },
            )
            reply = conn.getresponse()
            data = reply.read()
            if reply.status != 200:
                raise RuntimeError(f"featurestore serve: {reply.status} {data[:300]!r}")
            return data

        answers = {name: json.loads(post(name, 0)) for name in MODELS}
        cases = {name: (lambda i, name=name: post(name, i)) for name in MODELS}
        load = [round(x, 2) for x in os.getloadavg()]
        stats = interleave(cases, len(rows), rounds, seed, server_cpu(proc.pid))
        for s in stats.values():  # here CPU is the server's, not the client's
            s["server_cpu_us_per_request"] = s.pop("cpu_us_per_call")
        for conn in conns.values():
            conn.close()
        result = {"load_average": load, **stats}
        result["ratios"] = {
            label: {
                "p50": round(stats[a]["p50_ms"] / stats[b]["p50_ms"], 3),
                "p99": round(stats[a]["p99_ms"] / stats[b]["p99_ms"], 3),
                "server_cpu": round(
                    stats[a]["server_cpu_us_per_request"] / stats[b]["server_cpu_us_per_request"],
                    3,
                ),
            }
            for label, (a, b) in PAIRS.items()
        }
        result["first_answer_keys"] = {name: sorted(a) for name, a in answers.items()}
        log(f"HTTP 1 entity: {result}")
        return result
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# -- Feast -------------------------------------------------------------------------------


def feast_python(choice: str | None) -> str | None:
    """Feast's interpreter: the one given, else /tmp/feast-venv's, else this one if it has
    Feast 0.67 installed; None when there is none."""
    for candidate in [choice] if choice else ["/tmp/feast-venv/bin/python", sys.executable]:
        if candidate and Path(candidate).exists():
            ok = subprocess.run(
                [candidate, "-c", "import feast; assert feast.__version__.startswith('0.67')"],
                capture_output=True,
            )
            if ok.returncode == 0:
                return candidate
    return None


def feast_side(
    python: str, tmp: Path, port: int, batches: dict[int, list], rounds: int, seed: int
) -> dict[str, Any]:
    (tmp / "data" / "views.json").write_text(json.dumps(VIEWS))
    batches_file = tmp / "batches.json"
    batches_file.write_text(json.dumps({str(n): rows for n, rows in batches.items()}))
    out = subprocess.run(
        [python, str(ROOT / "_feast_on_demand.py"), "--repo", str(tmp / "feast_repo"),
         "--redis", f"127.0.0.1:{port},db=1", "--data", str(tmp / "data"), "--batches",
         str(batches_file), "--rounds", str(rounds), "--seed", str(seed)],
        capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"_feast_on_demand.py failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    for n in batches:
        stats = result[f"{n}_entities"]
        stats["ratios"] = ratios(stats, PAIRS)
    return result


def feast_agrees(ours: dict[str, Any], feast: dict[str, Any]) -> dict[str, Any]:
    """Feast's on-demand values for the probe rows against featurestore's."""
    theirs_python = [d["amount_over_avg_1h"][0] for d in feast["with_python"]]
    theirs_pandas = [d["amount_over_avg_1h_pd"][0] for d in feast["with_pandas"]]
    n = len(theirs_python)
    return {
        "rows": n,
        "python_equal": _same(ours["python"][:n], theirs_python),
        "pandas_equal": _same(ours["pandas"][:n], theirs_pandas),
        "feast_python": theirs_python[:5],
        "featurestore_python": ours["python"][:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20_000, help="lookups per case, 1 entity")
    parser.add_argument("--calls-100", type=int, default=2_000, help="lookups per case, 100")
    parser.add_argument("--http-calls", type=int, default=5_000, help="requests per case")
    parser.add_argument("--feast-calls", type=int, default=4_000, help="Feast lookups, 1 entity")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="a tenth of the calls")
    parser.add_argument("--feast-python", help="an interpreter with Feast 0.67 (see feast_python)")
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "results" / "on_demand.json"))
    args = parser.parse_args()
    if args.quick:
        for name in ("calls", "calls_100", "http_calls", "feast_calls"):
            setattr(args, name, max(getattr(args, name) // 10, args.rounds))
    feast = None if args.skip_feast else feast_python(args.feast_python)
    if not args.skip_feast and feast is None:
        log("no interpreter with Feast 0.67 (--feast-python): Feast is skipped")

    from featurestore import FeatureStore

    result: dict[str, Any] = {"benchmark": "on_demand", "machine": machine()}
    batches = {
        1: entity_batches(args.seed, 1, args.calls),
        100: entity_batches(args.seed, 100, args.calls_100),
    }
    with bench_redis("on_demand") as (r, url, tmp):
        repo = bench_repo(tmp / "repo", url, REPO_DEFS)
        rows = view_rows(args.seed)
        (tmp / "data").mkdir()
        for name, table in rows.items():
            pq.write_table(table, tmp / "data" / f"{name}.parquet")
        with FeatureStore(repo) as store:
            store.apply()
            for name, table in rows.items():
                store.write_online(name, table)
            result["data"] = {
                "users": USERS,
                "merchants": MERCHANTS,
                "stored_features": sum(len(f) for _, f in VIEWS.values()),
            }
            result["values"] = probe(store, [row for b in batches[1][:20] for row in b])
            result["in_process"] = in_process(store, batches, args.rounds, args.seed)
            keys = {name: store.create_credential(model)[1] for name, model in MODELS.items()}
        if not args.skip_http:
            http_rows = batches[1][: args.http_calls]
            result["http"] = over_http(repo, keys, http_rows, args.rounds, args.seed)
        if feast is not None:
            log("Feast ...")
            feast_batches = {
                1: batches[1][: args.feast_calls],
                100: batches[100][: max(args.feast_calls // 10, args.rounds)],
            }
            result["feast_load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
            port = r.connection_pool.connection_kwargs["port"]
            feast_result = feast_side(feast, tmp, port, feast_batches, args.rounds, args.seed)
            result["values"]["feast"] = feast_agrees(result["values"], feast_result.pop("probe"))
            result["feast_sdk"] = feast_result
            result["featurestore_over_feast"] = {
                f"{n}_entities": {
                    name: round(
                        result["in_process"][f"{n}_entities"][name]["p50_ms"]
                        / feast_result[f"{n}_entities"][name]["p50_ms"],
                        3,
                    )
                    for name in MODELS
                }
                for n in batches
            }
        shutil.rmtree(tmp, ignore_errors=True)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_result(result, args.out)


if __name__ == "__main__":
    main()
