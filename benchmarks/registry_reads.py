"""Registry read path: what a serving replica pays to notice and load an apply.

Servers poll ``Registry.serial`` and reload a snapshot only when it moved;
this measures both against the floor, the same SQL on a bare sqlite3
connection, on the example repo's registry. Prints JSON.

    python benchmarks/registry_reads.py [--iterations 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from featurestore.registry import Registry
from featurestore.repo import load_repo

ROOT = Path(__file__).resolve().parent.parent

SNAPSHOT_SQL = """
SELECT h.kind, h.name, h.revision, h.status, h.updated_at, r.spec, r.version
FROM fs_heads h JOIN fs_revisions r
  ON r.project = h.project AND r.kind = h.kind AND r.name = h.name AND r.revision = h.revision
WHERE h.project = ?
"""


def timed(fn: Callable[[], object], iterations: int) -> dict[str, float]:
    for _ in range(min(50, iterations)):
        fn()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 4),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "feature_repo"
        shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
        db = repo / "data" / "registry.db"
        registry = Registry(f"sqlite:///{db}")

        start = time.perf_counter()
        contents = load_repo(repo)
        load_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        registry.apply(contents)
        apply_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        registry.plan(load_repo(repo))
        plan_ms = (time.perf_counter() - start) * 1000

        raw = sqlite3.connect(db)

        def floor_serial_fetch() -> object:
            return raw.execute(
                "SELECT serial FROM fs_projects WHERE name = ?", ("payments",)
            ).fetchone()

        def floor_snapshot() -> object:
            rows = raw.execute(SNAPSHOT_SQL, ("payments",)).fetchall()
            versions = raw.execute(
                "SELECT * FROM fs_view_versions WHERE project = ?", ("payments",)
            ).fetchall()
            return [orjson.loads(r[5]) for r in rows], [orjson.loads(v[5]) for v in versions]

        serial = timed(lambda: registry.serial("payments"), args.iterations)
        serial_floor = timed(floor_serial_fetch, args.iterations)
        snapshot = timed(lambda: registry.snapshot("payments"), args.iterations // 4)
        snapshot_floor = timed(floor_snapshot, args.iterations // 4)
        snap = registry.snapshot("payments")
        resolve = timed(lambda: snap.resolve_model("fraud_detector"), args.iterations)
        raw.close()
        registry.close()

    result = {
        "benchmark": "registry_reads",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "example_repo": {
            "load_repo_ms": round(load_ms, 1),
            "first_apply_ms": round(apply_ms, 1),
            "plan_no_changes_ms": round(plan_ms, 1),
        },
        "serial_poll": {
            "featurestore": serial,
            "floor_bare_sqlite3": serial_floor,
            "ratio_p50": round(serial["p50_ms"] / serial_floor["p50_ms"], 2),
        },
        "snapshot_load": {
            "featurestore": snapshot,
            "floor_bare_sqlite3_and_json": snapshot_floor,
            "ratio_p50": round(snapshot["p50_ms"] / snapshot_floor["p50_ms"], 2),
        },
        "resolve_model_in_memory": resolve,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
