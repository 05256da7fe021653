"""The in-process lookup cache (``online_store.cache``) on a Zipf workload, vs no cache and
the bare-Redis floor.

Data: 100,000 entities x 5 float64 features (one view, TTL 1 day) in a throwaway Redis.
Lookups of 1 and 100 entities per call, entity ids drawn from a Zipf distribution
(s = 1.1 over ranks, ranks shuffled onto ids), the same batches for every case:

  * ``no_cache``: ``OnlineClient.get_online_features(model=...)``, every call to Redis;
  * ``cache_zipf``: the same with the cache on (``--max-staleness-ms``, ``--max-entries``):
    hot entities answered in-process, the rest in the call's one round trip;
  * ``cache_hit_path``: every entity of the call already held (warm, bound of an hour):
    what a hit costs;
  * ``floor_redis_pipeline``: a bare redis-py pipeline (hiredis), one HMGET per entity of
    the same keys, no decoding.

Timed in interleaved rounds (the cases' order shuffled per round) so machine noise hits all
alike. Per case: p50/p99 wall time per call, CPU time per call of this process
(``time.process_time``) and of the Redis server (``INFO cpu``), and the cache's hit rate.

    python benchmarks/online_cache.py                 # ~1 min
    python benchmarks/online_cache.py --calls 5000
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _interleaved import bench_redis, bench_repo, log, machine, percentiles, write_result
from online_lookup import FEATURES, REPO_DEFS, feature_rows

ENTITIES = 100_000


def zipf_ids(rng: np.random.Generator, s: float, size: int) -> np.ndarray:
    """``size`` entity ids, rank k drawn with probability ~ 1/k^s, ranks shuffled onto ids."""
    ranks = np.arange(1, ENTITIES + 1, dtype=np.float64)
    p = ranks**-s
    p /= p.sum()
    ids_by_rank = rng.permutation(ENTITIES)
    return ids_by_rank[rng.choice(ENTITIES, size=size, p=p)]


def redis_cpu(r: Any) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run(
    cases: dict[str, Callable[[int], Any]],
    count: int,
    rounds: int,
    r: Any,
    seed: int,
    caches: dict[str, Any],
) -> dict[str, Any]:
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {k: [] for k in cases}
    cpu = dict.fromkeys(cases, 0.0)
    server = dict.fromkeys(cases, 0.0)
    hits_before = {k: c.stats() for k, c in caches.items()}
    per = max(1, count // rounds)
    order = list(cases)
    for k in range(rounds):
        rng.shuffle(order)
        for name in order:
            fn = cases[name]
            s0, c0 = redis_cpu(r), time.process_time()
            for i in range(k * per, (k + 1) * per):
                t0 = time.perf_counter()
                fn(i)
                samples[name].append(time.perf_counter() - t0)
            cpu[name] += time.process_time() - c0
            server[name] += redis_cpu(r) - s0
    out: dict[str, Any] = {}
    for name, s in samples.items():
        out[name] = {
            **percentiles(s),
            "cpu_us_per_call": round(cpu[name] / len(s) * 1e6, 1),
            "redis_cpu_us_per_call": round(server[name] / len(s) * 1e6, 1),
        }
        if name in caches:
            before, after = hits_before[name], caches[name].stats()
            hits = after["hits"] - before["hits"]
            misses = after["misses"] - before["misses"]
            out[name]["hit_rate"] = round(hits / max(1, hits + misses), 4)
            out[name]["entries"] = after["entries"]
            out[name]["value_bytes"] = after["value_bytes"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20_000, help="lookups per case (1 entity)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--zipf-s", type=float, default=1.1)
    parser.add_argument("--max-staleness-ms", type=int, default=500)
    parser.add_argument("--max-entries", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "online_cache.json")
    )
    args = parser.parse_args()

    from featurestore import FeatureStore
    from featurestore.online.cache import LookupCache
    from featurestore.online.layout import ViewLayout

    result: dict[str, Any] = {
        "benchmark": "online_cache",
        "machine": machine(),
        "entities": ENTITIES,
        "features": len(FEATURES),
        "zipf_s": args.zipf_s,
        "max_staleness_ms": args.max_staleness_ms,
        "max_entries": args.max_entries,
    }
    with bench_redis("online_cache") as (r, url, tmp):
        store = FeatureStore(bench_repo(tmp / "repo", url, REPO_DEFS))
        store.apply()
        store.write_online("stats", feature_rows(args.seed, ENTITIES))
        snap = store.snapshot()
        layout = ViewLayout.from_version(snap, snap.view_version("stats"))
        plain = store.online_client(cache=None)
        zipf_cache = LookupCache(
            max_entries=args.max_entries, models={"bench_model": args.max_staleness_ms}
        )
        hot_cache = LookupCache(max_entries=ENTITIES, models={"bench_model": 3_600_000})
        cached = store.online_client(cache=zipf_cache)
        hot = store.online_client(cache=hot_cache)
        rng = np.random.default_rng(args.seed)
        for n, count in ((1, args.calls), (100, max(args.calls // 10, args.rounds))):
            ids = zipf_ids(rng, args.zipf_s, n * count).reshape(count, n).tolist()
            rows = [[{"entity_id": e} for e in batch] for batch in ids]
            keys = [[layout.prefix + str(e).encode() for e in batch] for batch in ids]
            for batch in rows:  # the hit path: every entity held before timing
                hot.get_online_features(batch, model="bench_model")

            def floor(i: int, keys: list[list[bytes]] = keys) -> None:
                pipe = r.pipeline(transaction=False)
                for key in keys[i]:
                    pipe.hmget(key, layout.field)
                pipe.execute()

            cases: dict[str, Callable[[int], Any]] = {
                "no_cache": lambda i, rows=rows: plain.get_online_features(
                    rows[i], model="bench_model"
                ),
                "cache_zipf": lambda i, rows=rows: cached.get_online_features(
                    rows[i], model="bench_model"
                ),
                "cache_hit_path": lambda i, rows=rows: hot.get_online_features(
                    rows[i], model="bench_model"
                ),
                "floor_redis_pipeline": floor,
            }
            for fn in cases.values():  # warm up: plans compiled, connections open
                for i in range(min(200, count)):
                    fn(i)
            stats = run(
                cases,
                count,
                args.rounds,
                r,
                args.seed + n,
                {"cache_zipf": zipf_cache, "cache_hit_path": hot_cache},
            )
            floor_p50 = stats["floor_redis_pipeline"]["p50_ms"]
            stats["ratios"] = {
                f"{name}_vs_floor_p50": round(stats[name]["p50_ms"] / floor_p50, 3)
                for name in ("no_cache", "cache_zipf", "cache_hit_path")
            }
            stats["ratios"]["cache_zipf_vs_no_cache_p50"] = round(
                stats["cache_zipf"]["p50_ms"] / stats["no_cache"]["p50_ms"], 3
            )
            stats["ratios"]["cache_zipf_vs_no_cache_p99"] = round(
                stats["cache_zipf"]["p99_ms"] / stats["no_cache"]["p99_ms"], 3
            )
            result[f"{n}_entities"] = stats
            log(f"{n} entities: {stats}")
        for client in (plain, cached, hot):
            client.close()
        store.close()
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_result(result, args.out)


if __name__ == "__main__":
    main()
