"""Feast's side of ``benchmarks/online_lookup.py``: run in Feast's own virtualenv.

    setup  --repo DIR --redis HOST:PORT --features FILE   apply and write the rows online
    sdk    --repo DIR --redis-url URL --keys FILE ...     time get_online_features in
                                                          rounds with the bare-pipeline floor
    serve  --repo DIR --port P --workers W                exec ``feast serve``

Prints JSON on stdout (progress on stderr). Feast is never a dependency of
featurestore; this file imports only Feast and what Feast pulls in.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from _feast_repo import FEATURES, stats_definitions, write_config


def setup(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq
    from feast import FeatureStore

    root = Path(args.repo)
    write_config(root, "olbench", redis=args.redis, redis_type=args.redis_type)
    store = FeatureStore(repo_path=str(root))
    store.apply(stats_definitions(args.features, ttl=timedelta(days=1), online=True, created=False))
    df = pq.read_table(args.features).to_pandas()
    start = time.perf_counter()
    store.write_to_online_store("stats", df)
    print(json.dumps({"rows": len(df), "write_s": round(time.perf_counter() - start, 2)}))


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 4),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 4),
        "calls": len(ordered),
    }


def sdk(args: argparse.Namespace) -> None:
    import redis
    from feast import FeatureStore

    store = FeatureStore(repo_path=args.repo)
    refs = [f"stats:{f}" for f in FEATURES]
    keys = json.loads(Path(args.keys).read_text())  # our Redis keys and field, per entity id
    ids = [int(i) for i in keys["ids"]]
    field = keys["field"].encode()
    if args.redis_type == "redis_cluster":  # the floor: redis-py's own cluster pipeline
        from redis.cluster import RedisCluster

        r: Any = RedisCluster.from_url(args.redis_url)
    else:
        r = redis.Redis.from_url(args.redis_url)
    rng = random.Random(7)
    out = {}
    for n, calls in ((1, args.calls), (100, args.calls // 10)):
        batches = [rng.sample(ids, n) for _ in range(calls)]

        def feast_call(batch: list[int]) -> None:
            store.get_online_features(features=refs, entity_rows=[{"entity_id": e} for e in batch])

        def floor_call(batch: list[int]) -> None:
            pipe = r.pipeline(transaction=False)
            for e in batch:
                pipe.hmget(keys["prefix"] + str(e), field)
            pipe.execute()

        for fn in (feast_call, floor_call):  # warm up
            for batch in batches[:50]:
                fn(batch)
        samples: dict[str, list[float]] = {"feast_sdk": [], "floor_redis_pipeline": []}
        rounds = 10
        per = max(1, calls // rounds)
        for k in range(rounds):  # interleaved rounds: machine noise hits both alike
            chunk = batches[k * per : (k + 1) * per]
            for name, fn in (("feast_sdk", feast_call), ("floor_redis_pipeline", floor_call)):
                for batch in chunk:
                    t0 = time.perf_counter()
                    fn(batch)
                    samples[name].append(time.perf_counter() - t0)
        out[f"{n}_entities"] = {name: percentiles(s) for name, s in samples.items()}
        print(f"feast sdk {n} entities: {out[f'{n}_entities']}", file=sys.stderr)
    # What Feast returns for one entity, to check it against featurestore's values.
    probe = store.get_online_features(features=refs, entity_rows=[{"entity_id": ids[0]}])
    out["probe"] = {"entity_id": ids[0], "values": probe.to_dict()}
    import feast

    out["feast_version"] = feast.__version__
    print(json.dumps(out, default=str))


def serve(args: argparse.Namespace) -> None:
    feast = str(Path(sys.executable).with_name("feast"))
    os.execv(
        feast,
        [
            feast,
            "-c",
            args.repo,
            "serve",
            "-p",
            str(args.port),
            "--max-requests",
            "0",
            "--no-access-log",
            "-w",
            str(args.workers),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["setup", "sdk", "serve"])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--redis", help="host:port[,db=N] for Feast's connection_string")
    parser.add_argument("--redis-url", help="redis://... for the floor")
    parser.add_argument("--redis-type", default="redis", choices=["redis", "redis_cluster"])
    parser.add_argument("--features")
    parser.add_argument("--keys")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--port", type=int, default=6566)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    {"setup": setup, "sdk": sdk, "serve": serve}[args.mode](args)


if __name__ == "__main__":
    main()
