"""What the lookup benchmarks share: a throwaway Redis, the machine's description, and
lookup clients timed side by side in interleaved rounds with the bare Redis floor.

``online_lookup.py`` (featurestore vs the floor), ``policy_lookup.py`` and
``drift_sampling.py`` (variants of one lookup) time with ``compare_lookups``: every case
reads the same keys in the same order, rounds are shuffled so no case always runs first,
and drift on a shared machine hits all cases alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from featurestore.devservices import free_port

ENTITIES = 10_000  # entity ids 0..N-1 of the lookup benchmarks' data (online_lookup.feature_rows)


def log(message: str) -> None:
    name = Path(sys.argv[0]).stem
    print(f"[{name} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def start_redis() -> tuple[subprocess.Popen, redis.Redis, int]:
    """A throwaway redis-server (no persistence) on a free port, answering PING."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    r = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            r.ping()
            return proc, r, port
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 4),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 4),
        "calls": len(ordered),
    }


def machine() -> dict[str, Any]:
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis": redis_version,
        "redis_py": redis.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def variant_args(name: str, doc: str | None) -> argparse.Namespace:
    """The options of a benchmark comparing variants of one lookup."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20_000, help="lookups per case (1 entity)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / f"{name}.json"))
    return parser.parse_args()


@contextmanager
def bench_redis(name: str) -> Iterator[tuple[redis.Redis, str, Path]]:
    """A throwaway Redis (client, URL) and a temporary folder for the benchmark's repos."""
    proc, r, port = start_redis()
    try:
        yield r, f"redis://127.0.0.1:{port}/0", Path(tempfile.mkdtemp(prefix=f"{name}-"))
    finally:
        proc.terminate()
        proc.wait(10)


def write_result(result: dict[str, Any], out: str) -> None:
    text = json.dumps(result, indent=2, default=str)
    print(text)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)


def bench_repo(path: Path, redis_url: str, defs: str) -> Path:
    """A feature repo of project ``bench`` with ``defs``, its own registry, on ``redis_url``."""
    path.mkdir(parents=True)
    (path / "featurestore.yaml").write_text(
        f"project: bench\nregistry: data/registry.db\nonline_store:\n  redis_url: {redis_url}\n"
    )
    (path / "defs.py").write_text(defs)
    return path


def compare_lookups(
    clients: dict[str, tuple[Any, str | None]],
    floor: Callable[[list[int]], None],
    *,
    calls: int,
    rounds: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Per entity count (1, 100): each client's lookup latency percentiles, and the floor's
    (``floor(entity_ids)`` fetching the same keys)."""
    rng = random.Random(seed)
    out: dict[str, dict[str, Any]] = {}
    for n, count in ((1, calls), (100, max(calls // 10, rounds))):
        batches = [rng.sample(range(ENTITIES), n) for _ in range(count)]
        rows = [[{"entity_id": e} for e in b] for b in batches]
        cases: dict[str, Callable[[int], Any]] = {
            name: (lambda i, c=client, m=model, rows=rows: c.get_online_features(rows[i], model=m))
            for name, (client, model) in clients.items()
        }
        cases["floor_redis_pipeline"] = lambda i, batches=batches: floor(batches[i])
        for fn in cases.values():  # warm up: plans compiled, connections open
            for i in range(min(200, count)):
                fn(i)
        samples: dict[str, list[float]] = {k: [] for k in cases}
        per = max(1, count // rounds)
        order = list(cases)
        for k in range(rounds):
            rng.shuffle(order)
            for name in order:
                fn = cases[name]
                for i in range(k * per, (k + 1) * per):
                    t0 = time.perf_counter()
                    fn(i)
                    samples[name].append(time.perf_counter() - t0)
        out[f"{n}_entities"] = {name: percentiles(s) for name, s in samples.items()}
        log(f"{n} entities: {out[f'{n}_entities']}")
    return out


def ratio(stats: dict[str, Any], a: str, b: str, key: str = "p50_ms") -> float:
    return round(stats[a][key] / stats[b][key], 3)


def redis_floor(r: Any, prefix: bytes, field: bytes) -> Callable[[list[int]], None]:
    def floor(ids: list[int]) -> None:
        pipe = r.pipeline(transaction=False)
        for e in ids:
            pipe.hmget(prefix + str(e).encode(), field)
        pipe.execute()

    return floor
