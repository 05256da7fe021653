"""Online lookups, side by side in one run on one Redis: featurestore, Feast 0.67, the floor.

Data: 10,000 entities x 5 float64 features (one view, TTL 1 day), written by
each tool to the same Redis (featurestore in db 0, Feast in db 1).

In-process (p50/p99 over thousands of calls, timed in interleaved rounds so
machine noise hits every contender alike):
  * featurestore ``OnlineClient.get_online_features(model=...)``, values plus
    per-feature status and event times;
  * the floor: a bare redis-py pipeline (hiredis) fetching the same bytes
    (one HMGET per entity), no decoding;
  * Feast's SDK ``get_online_features`` (in Feast's own virtualenv, timed in
    rounds with the same floor in that process).
HTTP (``wrk``, 1 entity x 5 features): sequential (1 connection) p50/p99, and
8 connections for requests/s and p99, against ``featurestore serve``,
``feast serve --max-requests 0`` and a bare FastAPI handler returning fixed
bytes, each with 1 and 2 workers.

    python benchmarks/online_lookup.py                    # ~3 min
    python benchmarks/online_lookup.py --skip-feast --calls 2000

Feast: ``python3 -m venv /tmp/feast-venv && /tmp/feast-venv/bin/pip install
'feast[redis,duckdb]==0.67.*'`` (see ``--feast-python``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import redis
from _interleaved import ENTITIES, compare_lookups, log, machine, redis_floor, start_redis

from featurestore.devservices import free_port

ROOT = Path(__file__).resolve().parent
FEATURES = [f"f{i}" for i in range(5)]

REPO_DEFS = """\
from datetime import timedelta

from featurestore import (
    Entity, FeatureService, FeatureView, Field, Float64, Int64, Model, ParquetSource,
)

entity = Entity(name="entity", join_key="entity_id", dtype=Int64)
source = ParquetSource(name="stats_source", path="data/source")
stats = FeatureView(
    name="stats",
    entities=[entity],
    source=source,
    schema=[Field(name=f"f{i}", dtype=Float64) for i in range(5)],
    ttl=timedelta(days=1),
)
service = FeatureService(name="stats_service", features=[stats])
model = Model(name="bench_model", feature_services=[service], owner="bench", purpose="bench")
"""


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def feature_rows(seed: int, entities: int = ENTITIES) -> pa.Table:
    """Entity ids 0..entities-1 with 5 float64 features, event times within the last hour."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    times = [now - timedelta(seconds=int(s)) for s in rng.integers(0, 3600, entities)]
    columns: dict[str, Any] = {
        "entity_id": pa.array(np.arange(entities, dtype=np.int64)),
        "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
    }
    for i, f in enumerate(FEATURES):
        columns[f] = pa.array(rng.standard_normal(entities) + i)
    return pa.table(columns)


def in_process(store: Any, r: redis.Redis, calls: int, seed: int) -> dict[str, Any]:
    from featurestore.online.layout import ViewLayout

    client = store.online_client()
    layout = ViewLayout.from_version(store.snapshot(), store.snapshot().view_version("stats"))
    out = compare_lookups(
        {"featurestore": (client, "bench_model")},
        redis_floor(r, layout.prefix, layout.field),
        calls=calls,
        rounds=10,
        seed=seed,
    )
    client.close()
    return out


# -- HTTP ------------------------------------------------------------------------------


def wrk_output(
    url: str,
    body: bytes,
    threads: int,
    connections: int,
    seconds: int,
    headers: dict[str, str] | None = None,
) -> str:
    """wrk's report of POSTing ``body`` to ``url`` (its latency distribution included)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(body.decode())}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            + "".join(
                f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n"
                for k, v in (headers or {}).items()
            )
        )
        script = f.name
    try:
        return subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
             script, url],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script)


def parse_wrk(out: str) -> dict[str, Any]:
    """Requests, requests/s, p50/p90/p99 (ms), non-2xx answers and socket errors."""
    m = re.search(r"(\d+) requests in", out)
    result: dict[str, Any] = {"requests": int(m.group(1)) if m else 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["requests_per_s"] = float(m.group(1)) if m else None
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            result[f"p{pct}_ms"] = round(float(m.group(1)) * scale, 3)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    result["socket_errors"] = m.group(1).strip() if m else None
    return result


def wrk(
    url: str,
    body: bytes,
    threads: int,
    connections: int,
    seconds: int,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    out = wrk_output(url, body, threads, connections, seconds, headers)
    return {"connections": connections, "seconds": seconds, **parse_wrk(out)}


def http_case(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    url: str,
    body: bytes,
    seconds: int,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_port(int(url.split(":")[2].split("/")[0]))
        import httpx

        probe = httpx.post(
            url,
            content=body,
            timeout=5,
            headers={"content-type": "application/json", **(headers or {})},
        )
        if probe.status_code != 200:
            raise RuntimeError(f"{name}: {probe.status_code} {probe.text[:300]}")
        wrk(url, body, 1, 4, 2, headers)  # warm up
        sequential = wrk(url, body, 1, 1, max(3, seconds // 2), headers)
        loaded = wrk(url, body, 2, 8, seconds, headers)
        log(f"{name}: sequential {sequential}, 8 connections {loaded}")
        return {"sequential": sequential, "8_connections": loaded, "probe": probe.json()}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5000, help="in-process calls (1 entity)")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per case")
    parser.add_argument("--workers", default="1,2", help="server worker counts to run")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--feast-python", default="/tmp/feast-venv/bin/python")
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "results" / "online_lookup.json"))
    args = parser.parse_args()
    if not args.skip_http and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk), or pass --skip-http")
    feast_ok = not args.skip_feast and Path(args.feast_python).exists()
    if not args.skip_feast and not feast_ok:
        log(f"no Feast interpreter at {args.feast_python}: Feast is skipped")

    from featurestore import FeatureStore

    result: dict[str, Any] = {"benchmark": "online_lookup", "machine": machine()}
    redis_proc, r, port = start_redis()
    tmp = Path(tempfile.mkdtemp(prefix="online_lookup-"))
    try:
        url0 = f"redis://127.0.0.1:{port}/0"
        repo = tmp / "repo"
        repo.mkdir()
        (repo / "featurestore.yaml").write_text(
            f"project: olbench\nregistry: data/registry.db\nonline_store:\n  redis_url: {url0}\n"
        )
        (repo / "defs.py").write_text(REPO_DEFS)
        rows = feature_rows(args.seed)
        features_file = tmp / "features.parquet"
        pq.write_table(rows, features_file)
        with FeatureStore(repo) as store:
            store.apply()
            start = time.perf_counter()
            stats = store.write_online("stats", rows)
            write_s = time.perf_counter() - start
            log(f"featurestore wrote {stats.written} rows in {write_s:.2f}s")
            result["data"] = {
                "entities": ENTITIES,
                "features": len(FEATURES),
                "featurestore_write_s": round(write_s, 3),
                "featurestore_write_rows_per_s": round(ENTITIES / write_s),
            }
            from featurestore.online.layout import ViewLayout

            snap = store.snapshot()
            layout = ViewLayout.from_version(snap, snap.view_version("stats"))
            sample = [layout.prefix + str(i).encode() for i in range(0, ENTITIES, 100)]
            result["data"]["featurestore_bytes_per_entity"] = round(
                statistics.mean(r.memory_usage(k) for k in sample)
            )
            result["in_process"] = in_process(store, r, args.calls, args.seed)
            one = store.get_online_features([{"entity_id": 0}], model="bench_model")
            ours_probe = one.rows()[0]
            _credential, api_key = store.create_credential("bench_model")

        if feast_ok:
            feast_repo = tmp / "feast_repo"
            out = subprocess.run(
                [
                    args.feast_python,
                    str(ROOT / "_feast_online.py"),
                    "setup",
                    "--repo",
                    str(feast_repo),
                    "--redis",
                    f"127.0.0.1:{port},db=1",
                    "--features",
                    str(features_file),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            result["data"]["feast_setup"] = json.loads(out.stdout.strip().splitlines()[-1])
            r1 = redis.Redis(port=port, db=1)
            feast_keys = [k for k in r1.scan_iter(count=1000)][:100]
            result["data"]["feast_bytes_per_entity"] = round(
                statistics.mean(r1.memory_usage(k) for k in feast_keys)
            )
            keys_file = tmp / "keys.json"
            keys_file.write_text(
                json.dumps(
                    {
                        "ids": list(range(ENTITIES)),
                        "prefix": layout.prefix.decode(),
                        "field": layout.field.decode(),
                    }
                )
            )
            log("feast sdk ...")
            out = subprocess.run(
                [
                    args.feast_python,
                    str(ROOT / "_feast_online.py"),
                    "sdk",
                    "--repo",
                    str(feast_repo),
                    "--redis-url",
                    url0,
                    "--keys",
                    str(keys_file),
                    "--calls",
                    str(args.calls),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            feast_sdk = json.loads(out.stdout.strip().splitlines()[-1])
            result["feast_sdk"] = feast_sdk
            probe = feast_sdk.pop("probe")["values"]
            result["values_agree"] = {
                "entity_id": 0,
                "featurestore": ours_probe,
                "feast": {f: probe[f][0] for f in FEATURES},
                "equal": all(ours_probe[f] == probe[f][0] for f in FEATURES),
            }

        if not args.skip_http:
            result["http"] = {}
            body_ours = json.dumps(
                {"model": "bench_model", "entities": [{"entity_id": 4242}]}
            ).encode()
            body_feast = json.dumps(
                {"features": [f"stats:{f}" for f in FEATURES], "entities": {"entity_id": [4242]}}
            ).encode()
            bare_body = tmp / "bare.json"
            for workers in [int(w) for w in args.workers.split(",")]:
                cases: dict[str, Any] = {}
                p = free_port()
                env = {**os.environ, "PYTHONUNBUFFERED": "1"}
                cases["featurestore"] = http_case(
                    "featurestore",
                    [
                        sys.executable,
                        "-m",
                        "featurestore.cli",
                        "serve",
                        "--repo",
                        str(repo),
                        "--port",
                        str(p),
                        "--workers",
                        str(workers),
                    ],
                    env,
                    f"http://127.0.0.1:{p}/v1/features",
                    body_ours,
                    args.seconds,
                    {"Authorization": f"Bearer {api_key}"},
                )
                bare_body.write_bytes(json.dumps(cases["featurestore"]["probe"]).encode())
                p = free_port()
                cases["bare_fastapi"] = http_case(
                    "bare_fastapi",
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "benchmarks._bare_fastapi:app",
                        "--port",
                        str(p),
                        "--workers",
                        str(workers),
                        "--log-level",
                        "warning",
                        "--no-access-log",
                    ],
                    {**env, "BARE_RESPONSE": str(bare_body), "PYTHONPATH": str(ROOT.parent)},
                    f"http://127.0.0.1:{p}/v1/features",
                    body_ours,
                    args.seconds,
                )
                if feast_ok:
                    p = free_port()
                    cases["feast_serve"] = http_case(
                        "feast_serve",
                        [
                            args.feast_python,
                            str(ROOT / "_feast_online.py"),
                            "serve",
                            "--repo",
                            str(feast_repo),
                            "--port",
                            str(p),
                            "--workers",
                            str(workers),
                        ],
                        env,
                        f"http://127.0.0.1:{p}/get-online-features",
                        body_feast,
                        args.seconds,
                    )
                for case in cases.values():
                    case.pop("probe", None)
                result["http"][f"{workers}_workers"] = cases
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    result["ratios"] = ratios(result)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2, default=str)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text + "\n")
    print(text)


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in ("1_entities", "100_entities"):
        ours = result["in_process"][n]
        out[f"featurestore_p50_over_floor_{n}"] = round(
            ours["featurestore"]["p50_ms"] / ours["floor_redis_pipeline"]["p50_ms"], 2
        )
        if "feast_sdk" in result:
            feast = result["feast_sdk"][n]
            out[f"feast_sdk_p50_over_floor_{n}"] = round(
                feast["feast_sdk"]["p50_ms"] / feast["floor_redis_pipeline"]["p50_ms"], 2
            )
    for workers, cases in result.get("http", {}).items():
        fs = cases["featurestore"]["8_connections"]
        bare = cases["bare_fastapi"]["8_connections"]
        out[f"http_{workers}_featurestore_over_bare_fastapi_rps"] = round(
            fs["requests_per_s"] / bare["requests_per_s"], 2
        )
        if "feast_serve" in cases:
            feast = cases["feast_serve"]["8_connections"]
            out[f"http_{workers}_featurestore_over_feast_rps"] = round(
                fs["requests_per_s"] / feast["requests_per_s"], 2
            )
            out[f"http_{workers}_p99_ms_featurestore_vs_feast"] = [
                fs.get("p99_ms"),
                feast.get("p99_ms"),
            ]
    return out


if __name__ == "__main__":
    main()
