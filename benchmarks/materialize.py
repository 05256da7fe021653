"""Batch materialization, side by side in one run: featurestore (Spark), Feast 0.67, the floor.

Per size (source rows : entities), the same rows, 5 float64 features, spread over the last
20 days, go to one Redis (a database per contender, flushed before each):

  * featurestore ``featurestore materialize`` as a command (``--engine auto``: in-process
    below 256 MB of source files in local mode, else Spark, start-up included), and
    in-process on a running Spark session (stage times reported), and (up to 5M rows) with
    the in-process engine: read, validate with Great Expectations (2 expectations), offline
    commit, online writes;
  * Feast 0.67 ``feast materialize`` as a command, and ``FeatureStore.materialize()``
    in-process (its own timing, import excluded), with its file offline store;
  * the floor: one DuckDB query for each entity's latest row, then pipelined redis-py HSETs
    of the same bytes featurestore stores.

    python benchmarks/materialize.py                        # 1M:10k and 20M:1M (long)
    python benchmarks/materialize.py --sizes 1000000:10000  # ~2 min

Feast runs in its own virtualenv (``--feast-python``, see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import redis

from featurestore.devservices import free_port

ROOT = Path(__file__).resolve().parent
FEATURES = [f"f{i}" for i in range(5)]

REPO_DEFS = """\
from datetime import timedelta

from featurestore import (
    Entity, FeatureView, Field, Float64, Int64, ParquetSource, expect_between, expect_not_null,
)

entity = Entity(name="entity", join_key="entity_id", dtype=Int64)
source = ParquetSource(
    name="stats_source", path="data/source", created_timestamp_field="created_timestamp"
)
stats = FeatureView(
    name="stats",
    entities=[entity],
    source=source,
    schema=[Field(name=f"f{i}", dtype=Float64) for i in range(5)],
    ttl=timedelta(days=60),
    expectations=[expect_not_null("f0"), expect_between("f1", -100, 100)],
)
"""


def log(message: str) -> None:
    print(f"[materialize {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def generate(rows: int, entities: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    end_us = int(datetime.now(UTC).timestamp() * 1e6) - 3_600_000_000
    span = 20 * 86_400_000_000
    event = end_us - rng.integers(0, span, rows)
    columns: dict[str, Any] = {
        "entity_id": pa.array(rng.integers(0, entities, rows, dtype=np.int64)),
        "event_timestamp": pa.array(event, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "created_timestamp": pa.array(event + 1_000_000, pa.int64()).cast(
            pa.timestamp("us", tz="UTC")
        ),
    }
    for i, f in enumerate(FEATURES):
        columns[f] = pa.array(rng.standard_normal(rows) + i)
    return pa.table(columns)


def run_cmd(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "seconds": round(seconds, 3),
        "peak_rss_mb_of_largest_child_so_far": round(max(peak, before) / 1024, 1),
        "stdout_tail": proc.stdout.strip().splitlines()[-3:],
    }


def floor(source_glob: str, r: redis.Redis, prefix: bytes, field: bytes) -> dict[str, Any]:
    """Latest row per entity in DuckDB, then pipelined HSETs of featurestore's bytes."""
    from featurestore.online.layout import encode_value

    start = time.perf_counter()
    conn = duckdb.connect()
    cols = ", ".join(FEATURES)
    latest = conn.sql(
        f"SELECT entity_id, epoch_us(max(event_timestamp)) AS ev, "
        f"arg_max(struct_pack(created_timestamp, {cols}), "
        f"struct_pack(event_timestamp, created_timestamp)) AS v "
        f"FROM read_parquet('{source_glob}', hive_partitioning = true) GROUP BY entity_id"
    ).fetchall()
    query_s = time.perf_counter() - start
    t0 = time.perf_counter()
    pipe = r.pipeline(transaction=False)
    for i, (entity, ev, v) in enumerate(latest):
        values = [v[f] for f in FEATURES]
        pipe.hset(prefix + str(entity).encode(), field, encode_value(ev, None, values))
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()
    write_s = time.perf_counter() - t0
    conn.close()
    return {
        "seconds": round(query_s + write_s, 3),
        "query_s": round(query_s, 3),
        "write_s": round(write_s, 3),
        "keys": len(latest),
        "keys_per_s": round(len(latest) / write_s),
    }


def one_size(
    args: argparse.Namespace, rows: int, entities: int, tmp: Path, port: int
) -> dict[str, Any]:
    from featurestore import FeatureStore
    from featurestore.materialize.job import materialize
    from featurestore.offline.spark_engine import session_from_config

    out: dict[str, Any] = {"source_rows": rows, "entities": entities}
    log(f"--- {rows:,} rows, {entities:,} entities: generating")
    data = generate(rows, entities, args.seed)
    repo = tmp / f"repo-{rows}"
    (repo / "data").mkdir(parents=True)
    (repo / "featurestore.yaml").write_text(
        f"project: matbench\nregistry: data/registry.db\n"
        f"online_store:\n  redis_url: redis://127.0.0.1:{port}/0\n"
        "spark:\n  conf:\n    spark.driver.memory: 6g\n"
    )
    (repo / "defs.py").write_text(REPO_DEFS)
    dates = pa.compute.strftime(data.column("event_timestamp"), format="%Y-%m-%d")
    ds.write_dataset(
        data.append_column("date", dates),
        repo / "data" / "source",
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"),
        existing_data_behavior="overwrite_or_ignore",
    )
    feast_file = tmp / f"feast-{rows}.parquet"
    pq.write_table(data, feast_file)
    del data, dates
    r0 = redis.Redis(port=port, db=0)
    fs_bin = str(Path(sys.executable).with_name("featurestore"))

    with FeatureStore(repo) as store:
        store.apply()
    log("featurestore command ...")
    r0.flushdb()
    out["featurestore_command"] = run_cmd([fs_bin, "materialize", "stats", "--repo", str(repo)])
    with FeatureStore(repo) as store:
        out["featurestore_command"]["engine"] = store.registry.runs.records(store.project)[0].engine
    log(f"featurestore command: {out['featurestore_command']}")
    if rows <= 5_000_000:
        with FeatureStore(repo) as store:
            r0.flushdb()
            start = time.perf_counter()
            (run,) = materialize(store, ["stats"], engine="local")
            out["featurestore_in_process_local_engine"] = {
                "seconds": round(time.perf_counter() - start, 3),
                "stages_s": {k: round(v, 3) for k, v in run.seconds.items()},
            }
        log(f"featurestore in-process, local engine: {out['featurestore_in_process_local_engine']}")

    with FeatureStore(repo) as store:
        spark = session_from_config(store.config)
        r0.flushdb()
        rss_before = _rss_mb()
        start = time.perf_counter()
        (run,) = materialize(store, ["stats"], session=spark, engine="spark")
        seconds = time.perf_counter() - start
        rec = run.record
        out["featurestore_in_process"] = {
            "seconds": round(seconds, 3),
            "stages_s": {k: round(v, 3) for k, v in run.seconds.items()},
            "rows_read": rec.rows_read,
            "rows_offline": rec.rows_offline,
            "entities_online": rec.rows_online,
            "online_keys_per_s": round(rec.rows_online / run.seconds["online"]),
            "driver_python_rss_growth_mb": round(_rss_mb() - rss_before, 1),
        }
        log(f"featurestore in-process: {out['featurestore_in_process']}")
        from featurestore.online.layout import ViewLayout

        snap = store.snapshot()
        layout = ViewLayout.from_version(snap, snap.view_version("stats"))
        probe = store.get_online_features([{"entity_id": 1}], features=["stats:f0"]).to_dict()
        spark.stop()

    r2 = redis.Redis(port=port, db=2)
    r2.flushdb()
    out["floor"] = floor(
        str(repo / "data" / "source" / "**" / "*.parquet"), r2, layout.prefix, layout.field
    )
    log(f"floor: {out['floor']}")
    floor_probe = r2.hget(layout.prefix + b"1", layout.field)
    r0_probe = r0.hget(layout.prefix + b"1", layout.field)
    out["online_values_equal_floor"] = floor_probe is not None and (
        floor_probe[16:] == r0_probe[16:]  # values (the floor writes no created time)
    )
    out["probe_entity_1"] = probe

    if args.feast_ok:
        feast_repo = tmp / f"feast-{rows}"
        subprocess.run(
            [
                args.feast_python,
                str(ROOT / "_feast_materialize.py"),
                "setup",
                "--repo",
                str(feast_repo),
                "--redis",
                f"127.0.0.1:{port},db=1",
                "--features",
                str(feast_file),
            ],
            check=True,
            capture_output=True,
        )
        r1 = redis.Redis(port=port, db=1)
        start_s = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S")
        end_s = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        feast_bin = str(Path(args.feast_python).with_name("feast"))
        log("feast command ...")
        r1.flushdb()
        out["feast_command"] = run_cmd(
            [feast_bin, "-c", str(feast_repo), "materialize", start_s, end_s]
        )
        log(f"feast command: {out['feast_command']['seconds']} s")
        r1.flushdb()
        proc = run_cmd(
            [
                args.feast_python,
                str(ROOT / "_feast_materialize.py"),
                "inproc",
                "--repo",
                str(feast_repo),
                "--start",
                start_s,
                "--end",
                end_s,
            ]
        )
        inproc = json.loads(proc["stdout_tail"][-1])
        inproc["keys"] = r1.dbsize()
        inproc["keys_per_s"] = round(inproc["keys"] / inproc["seconds"])
        out["feast_in_process"] = inproc
        log(f"feast in-process: {inproc}")
    return out


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def ratios(run: dict[str, Any]) -> dict[str, Any]:
    fs_cmd = run["featurestore_command"]["seconds"]
    fs_in = run["featurestore_in_process"]
    out = {
        "featurestore_in_process_over_floor": round(fs_in["seconds"] / run["floor"]["seconds"], 2)
    }
    if "feast_command" in run:
        out["featurestore_command_over_feast_command"] = round(
            fs_cmd / run["feast_command"]["seconds"], 2
        )
        out["featurestore_in_process_over_feast_in_process"] = round(
            fs_in["seconds"] / run["feast_in_process"]["seconds"], 2
        )
        out["online_keys_per_s_featurestore_over_feast"] = round(
            fs_in["online_keys_per_s"] / run["feast_in_process"]["keys_per_s"], 2
        )
    out["online_keys_per_s_featurestore_over_floor"] = round(
        fs_in["online_keys_per_s"] / run["floor"]["keys_per_s"], 2
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000000:10000,20000000:1000000")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--feast-python", default="/tmp/feast-venv/bin/python")
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "results" / "materialize.json"))
    args = parser.parse_args()
    args.feast_ok = not args.skip_feast and Path(args.feast_python).exists()
    port = free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    tmp = Path(tempfile.mkdtemp(prefix="materialize-bench-"))
    result: dict[str, Any] = {
        "benchmark": "materialize",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "runs": [],
    }
    try:
        time.sleep(0.3)
        for size in args.sizes.split(","):
            rows, entities = (int(x) for x in size.split(":"))
            run = one_size(args, rows, entities, tmp, port)
            run["ratios"] = ratios(run)
            result["runs"].append(run)
            log(f"ratios: {run['ratios']}")
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    if len(result["runs"]) > 1:
        a, b = result["runs"][0], result["runs"][-1]
        result["growth"] = {
            "rows_factor": round(b["source_rows"] / a["source_rows"], 1),
            "featurestore_in_process_time_factor": round(
                b["featurestore_in_process"]["seconds"] / a["featurestore_in_process"]["seconds"], 1
            ),
        }
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2, default=str)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
