"""Serving from a big registry: snapshot load, catalog build, memory, lookups, reloads.

A generated repo (``_registry_repo.write_repo``: ``--views`` views of 10 features,
``--models`` models of 3 views each) is applied to a SQLite registry, then measured:

  * ``Registry.snapshot()`` time (best of 3) and its memory (tracemalloc: bytes held by
    the snapshot, per model), and the process's RSS growth;
  * ``FeatureStore.catalog()`` (snapshot + keys) time; first-lookup plan compile time;
  * a reload that carries compiled plans over (``catalog(previous=...)``);
  * in-process lookup p50/p99 (one entity, one model) on the example repo's small registry
    and on the big one, on one Redis;
  * lookup p50/p99 in a thread while another thread reloads the big catalog, as
    ``featurestore serve`` does (``Server.refresh`` runs the reload in a worker thread):
    how long the reload holds the interpreter from lookups.

    python benchmarks/registry_serving.py                          # 1,000 views, 10,000 models
    python benchmarks/registry_serving.py --views 10000 --models 100000 --root /tmp/big
      (the first apply of 100,000 models takes minutes; --root keeps the repo for reruns)
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
from _interleaved import log, machine, start_redis
from _interleaved import percentiles as interleaved_percentiles
from _registry_repo import write_repo

from featurestore import FeatureStore
from featurestore.serving import heap

ROOT = Path(__file__).resolve().parent.parent


def set_redis(repo: Path, url: str) -> None:
    config = repo / "featurestore.yaml"
    lines = [
        f"  redis_url: {url}" if line.strip().startswith("redis_url:") else line
        for line in config.read_text().splitlines()
    ]
    config.write_text("\n".join(lines) + "\n")


def big_repo(root: Path, views: int, models: int) -> Path:
    """The generated repo, applied (kept under ``root`` for reruns of the same size)."""
    stamp = root / ".applied"
    if stamp.exists() and stamp.read_text() == f"{views} {models}":
        return root
    write_repo(root, views=views, models=models, layout="split")
    started = time.perf_counter()
    with FeatureStore(root) as store:
        store.apply()
    log(f"applied {views} views / {models} models in {time.perf_counter() - started:.0f} s")
    stamp.write_text(f"{views} {models}")
    return root


def user_rows(features: int = 10) -> pa.Table:
    columns: dict[str, Any] = {
        "user_id": pa.array([1], pa.int64()),
        "event_timestamp": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
    }
    for j in range(features):
        columns[f"f{j}"] = pa.array([float(j)], pa.float64())
    return pa.table(columns)


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p99 (the shared ones) and the worst sample: a reload's stalls show in the max."""
    return {**interleaved_percentiles(samples), "max_ms": round(max(samples) * 1000, 3)}


def lookups(client: Any, model: str, entity: dict[str, Any], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        client.get_online_features([entity], model=model)
        out.append(time.perf_counter() - start)
    return out


def snapshot_memory(store: FeatureStore) -> tuple[Any, int]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    snapshot = store.snapshot()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return snapshot, held


def during_reload(
    store: FeatureStore, client: Any, model: str, reloads: int, *, settle: bool
) -> dict[str, Any]:
    """Lookups in this thread while another thread reloads the catalog ``reloads`` times
    and swaps it in, as ``Server.refresh`` does (``settle``: with its ``heap.settle``)."""
    done = threading.Event()
    took: list[float] = []
    pauses: list[float] = []

    def timed_gc(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            pauses.append(time.perf_counter())
        elif pauses:
            pauses[-1] = time.perf_counter() - pauses[-1]

    def reload() -> None:
        for _ in range(reloads):
            start = time.perf_counter()
            catalog = store.catalog(previous=client.catalog)
            if settle:
                heap.settle()
            client.catalog = catalog
            took.append(time.perf_counter() - start)
        done.set()

    if settle:
        heap.settle()  # as the server does after its first catalog
    gc.callbacks.append(timed_gc)

    thread = threading.Thread(target=reload)
    samples: list[float] = []
    thread.start()
    while not done.is_set():
        start = time.perf_counter()
        client.get_online_features([{"user_id": 1}], model=model)
        samples.append(time.perf_counter() - start)
    thread.join()
    gc.callbacks.remove(timed_gc)
    return {
        **percentiles(samples),
        "reload_s": round(statistics.median(took), 3),
        "gc_pauses_over_10ms": sorted(round(p * 1000) for p in pauses if 0.01 < p < 60),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--views", type=int, default=1000)
    parser.add_argument("--models", type=int, default=10000)
    parser.add_argument("--root", type=Path, help="where to keep the big repo (default: temp)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--plans", type=int, default=5000, help="plans compiled before reloads")
    args = parser.parse_args()

    proc, _r, port = start_redis()
    url = f"redis://127.0.0.1:{port}/0"
    tmp = Path(tempfile.mkdtemp())
    result: dict[str, Any] = {
        "machine": machine(),
        "views": args.views,
        "models": args.models,
        "sizes": "10 features a view, 3 views a model (benchmarks/_registry_repo.py)",
    }
    try:
        small_root = tmp / "small"
        shutil.copytree(ROOT / "feature_repo", small_root, ignore=shutil.ignore_patterns("data"))
        set_redis(small_root, url)
        with FeatureStore(small_root) as small:
            small.apply()
            small_client = small.online_client(cache=None)
            entity = {"user_id": 1, "merchant_id": "m1"}
            model = sorted(small.snapshot().active("model"))[0]
            small_client.get_online_features([entity], model=model)
            small_lookups = lookups(small_client, model, entity, args.calls)

        root = big_repo(args.root or tmp / "big", args.views, args.models)
        set_redis(root, url)
        process = psutil.Process()
        with FeatureStore(root) as store:
            for v in range(3):  # model_0 reads view_0, view_1 and view_2
                store.write_online(f"view_{v}", user_rows())
            rss_before = process.memory_info().rss
            snapshot, held = snapshot_memory(store)
            rss_snapshot = process.memory_info().rss - rss_before
            loads = []
            for _ in range(3):
                start = time.perf_counter()
                store.snapshot()
                loads.append(time.perf_counter() - start)
            start = time.perf_counter()
            catalog = store.catalog()
            catalog_s = time.perf_counter() - start
            compile_s = []
            for i in range(args.plans):
                start = time.perf_counter()
                catalog.plan(model=f"model_{i % args.models}")
                compile_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            carried = store.catalog(previous=catalog)
            reload_s = time.perf_counter() - start
            client = store.online_client(cache=None, refresh_seconds=3600)
            client.catalog = carried
            client.get_online_features([{"user_id": 1}], model="model_0")
            big_lookups = lookups(client, "model_0", {"user_id": 1}, args.calls)
            quiet = percentiles(lookups(client, "model_0", {"user_id": 1}, args.calls))
            plain = during_reload(store, client, "model_0", reloads=3, settle=False)
            settled = during_reload(store, client, "model_0", reloads=3, settle=True)
            result["big"] = {
                "snapshot_load_s": round(min(loads), 3),
                "snapshot_mb": round(held / 1e6, 1),
                "snapshot_bytes_per_model": round(held / args.models),
                "snapshot_rss_growth_mb": round(rss_snapshot / 1e6, 1),
                "catalog_build_s": round(catalog_s, 3),
                "plan_compile_ms": percentiles(compile_s),
                "reload_carrying_plans_s": round(reload_s, 3),
                "plans_carried": carried.stats()["carried"],
                "rss_mb": round(process.memory_info().rss / 1e6, 1),
            }
            result["lookup_small_registry"] = percentiles(small_lookups)
            result["lookup_big_registry"] = percentiles(big_lookups)
            result["lookup_big_quiet"] = quiet
            result["lookup_big_during_reload_without_gc_freeze"] = plain
            result["lookup_big_during_reload"] = settled
            del snapshot
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
