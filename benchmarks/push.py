"""Push throughput, in one run on one Redis: ``store.push`` vs ``store.write_online`` on the
same rows (in-process), and ``POST /v1/push`` over HTTP (batches of 1 and 100 rows), plus
how many Parquet files 10,000 single-row offline pushes leave, in-process (all within
one buffer interval) and over HTTP (spread over several intervals: ~1,000-2,000/s).

Data: one view of 5 float64 features keyed by an int64 user id (TTL 1 day). In-process,
``write_online`` gets the rows as an Arrow table (what it takes) and ``push`` as a list
of dicts (what a service has); each call of either is one batch. HTTP: one
``featurestore serve`` worker, a client (httpx, keep-alive) sequentially and with 4
threads; on 2 cores the Python client takes a good share of the CPU, so HTTP rows/s are
a lower bound.

    python benchmarks/push.py                 # ~1 min
    python benchmarks/push.py --rows 5000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
from _interleaved import bench_redis, bench_repo, log, machine, write_result

from featurestore import FeatureStore
from featurestore.devservices import free_port
from featurestore.offline.table import OfflineTable
from featurestore.offline.writer import table_path

ROOT = Path(__file__).resolve().parent
FEATURES = [f"f{i}" for i in range(5)]

DEFS = """\
from datetime import timedelta

from featurestore import Entity, FeatureView, Field, Float64, Int64, ParquetSource

user = Entity(name="user", join_key="user_id", dtype=Int64)
src = ParquetSource(name="src", path="data/src")
scores = FeatureView(
    name="scores",
    entities=[user],
    source=src,
    schema=[Field(name=f"f{i}", dtype=Float64) for i in range(5)],
    ttl=timedelta(days=1),
)
http_scores = FeatureView(  # the same, for the HTTP offline run's files alone
    name="http_scores",
    entities=[user],
    source=src,
    schema=[Field(name=f"f{i}", dtype=Float64) for i in range(5)],
    ttl=timedelta(days=1),
)
"""


def dict_rows(n: int, t: datetime, offset: int = 0) -> list[dict[str, Any]]:
    return [
        {"user_id": offset + i, "event_timestamp": t, **{f: float(i) for f in FEATURES}}
        for i in range(n)
    ]


def arrow_rows(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
            "event_timestamp": pa.array(
                [r["event_timestamp"] for r in rows], pa.timestamp("us", tz="UTC")
            ),
            **{f: pa.array([r[f] for r in rows], pa.float64()) for f in FEATURES},
        }
    )


def rate(rows: int, seconds: float) -> float:
    return round(rows / seconds, 1)


def in_process(repo: Path, rows: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t = datetime.now(UTC) - timedelta(minutes=1)
    with FeatureStore(repo) as store:
        for batch in (1, 100):
            n = rows if batch == 100 else rows // 10
            batches = [dict_rows(batch, t, i * batch) for i in range(n // batch)]
            tables = [arrow_rows(b) for b in batches]
            store.push("scores", batches[0])  # warm: plans, scripts, connections
            store.write_online("scores", tables[0])
            start = time.perf_counter()
            for b in batches:
                store.push("scores", b)
            push_s = time.perf_counter() - start
            start = time.perf_counter()
            for table in tables:
                store.write_online("scores", table)
            write_s = time.perf_counter() - start
            out[f"batch_{batch}"] = {
                "rows": n,
                "push_rows_per_s": rate(n, push_s),
                "write_online_rows_per_s": rate(n, write_s),
                "push_vs_write_online": round(write_s / push_s, 2),
            }
    return out


def offline_files(repo: Path, pushes: int) -> dict[str, Any]:
    t = datetime.now(UTC) - timedelta(minutes=1)
    with FeatureStore(repo) as store:
        start = time.perf_counter()
        for i in range(pushes):
            store.push("scores", dict_rows(1, t, 1_000_000 + i), to="offline")
        push_s = time.perf_counter() - start
        buffer = store.pusher.buffer
        landed_before_close = buffer.rows_landed
    table = OfflineTable(table_path(repo / "data" / "offline", "bench", "scores", 1))
    manifest = table.manifest()
    return {
        "single_row_pushes": pushes,
        "push_rows_per_s": rate(pushes, push_s),
        "landed_before_close": landed_before_close,
        "rows_landed": sum(f.rows for f in manifest.files),
        "files": len(manifest.files),
    }


def http(repo: Path, rows: int, offline_pushes: int) -> dict[str, Any]:
    with FeatureStore(repo) as store:
        _, key = store.create_push_credential(["scores", "http_scores"])
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "featurestore.cli", "serve", "--repo", str(repo)),
            *("--port", str(port), "--workers", "1"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    out: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        t = datetime.now(UTC) - timedelta(minutes=1)
        for batch in (1, 100):
            n = rows // 10 if batch == 1 else rows
            bodies = [
                orjson.dumps(
                    {
                        "view": "scores",
                        "rows": [
                            {**r, "event_timestamp": t.isoformat()}
                            for r in dict_rows(batch, t, 2_000_000 + i * batch)
                        ],
                    }
                )
                for i in range(n // batch)
            ]
            for threads in (1, 4):
                clients = [httpx.Client(base_url=url, headers=headers) for _ in range(threads)]
                clients[0].post("/v1/push", content=bodies[0]).raise_for_status()

                def send(
                    j: int, clients: list[httpx.Client] = clients, bodies: list[bytes] = bodies
                ) -> None:
                    client = clients[j % len(clients)]
                    for body in bodies[j :: len(clients)]:
                        client.post("/v1/push", content=body).raise_for_status()

                start = time.perf_counter()
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(send, range(threads)))
                seconds = time.perf_counter() - start
                for c in clients:
                    c.close()
                out[f"batch_{batch}_threads_{threads}"] = {
                    "requests": len(bodies),
                    "rows_per_s": rate(len(bodies) * batch, seconds),
                    "requests_per_s": rate(len(bodies), seconds),
                }
        out["offline"] = http_offline(url, headers, t, offline_pushes)
    finally:
        proc.terminate()  # a clean stop: the server lands its buffer
        proc.wait(15)
    table = OfflineTable(table_path(repo / "data" / "offline", "bench", "http_scores", 1))
    files = table.manifest().files
    out["offline"]["rows_landed"] = sum(f.rows for f in files)
    out["offline"]["files"] = len(files)
    return out


def http_offline(
    url: str, headers: dict[str, str], t: datetime, pushes: int, threads: int = 4
) -> dict[str, Any]:
    """``pushes`` single-row offline pushes over ``threads`` connections (the files they
    leave are counted once the server has stopped)."""
    bodies = [
        orjson.dumps(
            {
                "view": "http_scores",
                "to": "offline",
                "rows": [
                    {**r, "event_timestamp": t.isoformat()} for r in dict_rows(1, t, 3_000_000 + i)
                ],
            }
        )
        for i in range(pushes)
    ]
    clients = [httpx.Client(base_url=url, headers=headers) for _ in range(threads)]

    def send(j: int) -> None:
        for body in bodies[j::threads]:
            clients[j].post("/v1/push", content=body).raise_for_status()

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, range(threads)))
    seconds = time.perf_counter() - start
    for c in clients:
        c.close()
    return {
        "single_row_pushes": pushes,
        "seconds": round(seconds, 2),
        "rows_per_s": rate(pushes, seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows per 100-row run")
    parser.add_argument("--offline-pushes", type=int, default=10_000)
    parser.add_argument("--out", default=str(ROOT / "results" / "push.json"))
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "push", "machine": machine()}
    with bench_redis("push") as (_r, url, tmp):
        repo = bench_repo(tmp / "repo", url, DEFS)
        with FeatureStore(repo) as store:
            store.apply()
        log("in-process push vs write_online")
        result["in_process"] = in_process(repo, args.rows)
        log("offline: files per single-row pushes")
        result["offline"] = offline_files(repo, args.offline_pushes)
        log("HTTP POST /v1/push")
        result["http"] = http(repo, args.rows, args.offline_pushes)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_result(result, args.out)


if __name__ == "__main__":
    main()
