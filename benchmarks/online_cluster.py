"""The online store on one Redis and on a 3-primary Redis Cluster, side by side in one run.

Same data in both (10,000 entities x 5 float64 features; one view, TTL 1 day), written
through each store's monotonic writer, then:

* writes: ``write_online`` of ``--write-rows`` rows (what materialization's local engine
  calls), keys/s and this process's CPU per key;
* in-process lookups (p50/p99, interleaved rounds): featurestore on standalone, on the
  cluster, and the floors: a bare redis-py pipeline on standalone, and redis-py's own
  ``RedisCluster`` pipeline on the cluster (one HMGET per entity, no decoding);
  1 entity and 100 entities (spread over every primary);
* HTTP (``wrk``, 1 worker, 1 and 100 entities): ``featurestore serve`` on each store;
* Feast 0.67's SDK on the same standalone Redis (``redis_type: redis``) and the same cluster
  (``redis_type: redis_cluster``), timed in its own process beside the same floors.

    python benchmarks/online_cluster.py            # ~2 min
    python benchmarks/online_cluster.py --skip-http --calls 2000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from _interleaved import (
    ENTITIES,
    compare_lookups,
    log,
    machine,
    ratio,
    redis_floor,
    start_redis,
    write_result,
)
from online_lookup import REPO_DEFS, feature_rows, http_case
from redis.cluster import RedisCluster

from featurestore import FeatureStore, devservices
from featurestore.online.layout import ViewLayout

ROOT = Path(__file__).resolve().parent


def repo(path: Path, url: str, cluster: bool) -> Path:
    path.mkdir(parents=True)
    (path / "featurestore.yaml").write_text(
        f"project: bench\nregistry: data/registry.db\nonline_store:\n  redis_url: {url}\n"
        f"  cluster: {'true' if cluster else 'false'}\n"
    )
    (path / "defs.py").write_text(REPO_DEFS)
    return path


def timed_write(store: FeatureStore, table: pa.Table) -> dict[str, Any]:
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    stats = store.write_online("stats", table)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "rows": table.num_rows,
        "written": stats.written,
        "keys_per_s": round(table.num_rows / wall),
        "client_cpu_us_per_key": round(cpu / table.num_rows * 1e6, 2),
    }


class ClusterFloor:
    """redis-py's RedisCluster pipeline fetching the same bytes: what a user writes by hand."""

    def __init__(self, url: str, prefix: bytes, field: bytes) -> None:
        self.client = RedisCluster.from_url(url)
        self.prefix = prefix
        self.field = field

    def get_online_features(self, rows: list[dict[str, int]], model: str | None = None) -> None:
        pipe = self.client.pipeline(transaction=False)
        for row in rows:
            pipe.hmget(self.prefix + str(row["entity_id"]).encode(), self.field)
        pipe.execute()


def feast(
    python: str,
    tmp: Path,
    name: str,
    redis_type: str,
    connection: str,
    floor_url: str,
    layout: ViewLayout,
    calls: int,
    seed: int,
) -> dict[str, Any]:
    """Feast's SDK on the same Redis or cluster (its own keys beside ours), and the floor on
    ours, timed in Feast's process (benchmarks/_feast_online.py)."""
    import subprocess

    features = tmp / "features.parquet"
    if not features.exists():
        import pyarrow.parquet as pq

        pq.write_table(feature_rows(seed), features)
    keys = tmp / "keys.json"
    ids = list(range(ENTITIES))
    keys.write_text(
        json.dumps({"ids": ids, "prefix": layout.prefix.decode(), "field": layout.field.decode()})
    )
    repo_dir = tmp / f"feast-{name}"
    common = ["--repo", str(repo_dir), "--redis-type", redis_type]
    script = str(ROOT / "_feast_online.py")
    setup = subprocess.run(
        [python, script, "setup", *common, "--redis", connection, "--features", str(features)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    sdk = subprocess.run(
        [python, script, "sdk", *common, "--redis-url", floor_url, "--keys", str(keys),
         "--calls", str(calls)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = json.loads(sdk.stdout.strip().splitlines()[-1])
    out.pop("probe", None)
    out["setup"] = json.loads(setup.stdout.strip().splitlines()[-1])
    log(f"feast {name}: {out}")
    return out


def http(store: FeatureStore, seconds: int, name: str) -> dict[str, Any]:
    from featurestore.devservices import free_port

    _credential, key = store.create_credential("bench_model")
    out = {}
    for n in (1, 100):
        port = free_port()
        body = json.dumps({"entities": [{"entity_id": e} for e in range(0, n * 97, 97)]})
        cmd = [
            sys.executable, "-m", "featurestore.cli", "serve", "-r", str(store.config.repo_path),
            "--port", str(port), "--workers", "1",
        ]  # fmt: skip
        out[f"{n}_entities"] = http_case(
            f"{name} {n} entities",
            cmd,
            dict(os.environ),
            f"http://127.0.0.1:{port}/v1/features",
            body.encode(),
            seconds,
            {"Authorization": f"Bearer {key}"},
        )
        out[f"{n}_entities"].pop("probe", None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5000, help="in-process calls (1 entity)")
    parser.add_argument("--write-rows", type=int, default=200_000)
    parser.add_argument("--seconds", type=int, default=6, help="wrk duration per case")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument(
        "--feast-python", default=sys.executable, help="an interpreter with feast 0.67"
    )
    parser.add_argument("--out", default=str(ROOT / "results" / "online_cluster.json"))
    args = parser.parse_args()

    result: dict[str, Any] = {"machine": machine(), "cluster": "3 primaries, no replicas"}
    tmp = Path(tempfile.mkdtemp(prefix="online-cluster-"))
    proc, r, port = start_redis()
    ports = devservices.free_ports(3, cluster_bus=True)
    cluster_url = f"redis://127.0.0.1:{ports[0]}/0"
    devservices.up(cluster_url, None, tmp / "cluster", redis_cluster=3, cluster_replicas=0)
    try:
        standalone_url = f"redis://127.0.0.1:{port}/0"
        stores = {
            "standalone": FeatureStore(repo(tmp / "standalone", standalone_url, False)),
            "cluster": FeatureStore(repo(tmp / "cluster-repo", cluster_url, True)),
        }
        table = feature_rows(args.seed, args.write_rows)  # the first 10,000 are looked up
        writes = {}
        for name, store in stores.items():
            store.apply()
            writes[name] = timed_write(store, table)
            log(f"write {name}: {writes[name]}")
        writes["cluster_vs_standalone_keys_per_s"] = round(
            writes["cluster"]["keys_per_s"] / writes["standalone"]["keys_per_s"], 3
        )
        result["writes"] = writes

        snap = stores["standalone"].snapshot()
        layout = ViewLayout.from_version(snap, snap.view_version("stats"))
        clients = {name: (s.online_client(), "bench_model") for name, s in stores.items()}
        clients["floor_redis_py_cluster_pipeline"] = (
            ClusterFloor(cluster_url, layout.prefix, layout.field),
            None,
        )
        lookups = compare_lookups(
            clients,
            redis_floor(r, layout.prefix, layout.field),
            calls=args.calls,
            rounds=10,
            seed=args.seed,
        )
        for stats in lookups.values():
            stats["ratios"] = {
                "cluster_vs_standalone_p50": ratio(stats, "cluster", "standalone"),
                "standalone_vs_floor_p50": ratio(stats, "standalone", "floor_redis_pipeline"),
                "cluster_vs_redis_py_cluster_p50": ratio(
                    stats, "cluster", "floor_redis_py_cluster_pipeline"
                ),
            }
        result["in_process"] = lookups
        if not args.skip_feast:
            connections = {
                "standalone": ("redis", f"127.0.0.1:{port},db=1", standalone_url),
                "cluster": (
                    "redis_cluster",
                    ",".join(f"127.0.0.1:{p}" for p in ports),
                    cluster_url,
                ),
            }
            result["feast_sdk"] = {}
            for name, (kind, connection, floor_url) in connections.items():
                try:
                    result["feast_sdk"][name] = feast(
                        args.feast_python, tmp, name, kind, connection, floor_url, layout,
                        args.calls, args.seed,
                    )  # fmt: skip
                except Exception as exc:  # report why, keep the rest of the run
                    detail = getattr(exc, "stderr", "") or str(exc)
                    result["feast_sdk"][name] = {"error": str(detail)[-2000:]}
                    log(f"feast {name} failed: {str(detail)[-500:]}")
                    continue
                for n, stats in lookups.items():
                    theirs = result["feast_sdk"][name][n]["feast_sdk"]["p50_ms"]
                    stats["ratios"][f"feast_{name}_vs_featurestore_{name}_p50"] = round(
                        theirs / stats[name]["p50_ms"], 2
                    )
        if not args.skip_http:
            result["http_1_worker"] = {
                name: http(store, args.seconds, name) for name, store in stores.items()
            }
        for store in stores.values():
            store.close()
    finally:
        devservices.down(tmp / "cluster")
        proc.terminate()
        proc.wait(10)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_result(result, args.out)


if __name__ == "__main__":
    main()
