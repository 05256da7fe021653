"""Lookup clients timed side by side in interleaved rounds, with the bare Redis floor.

Used by the benchmarks that compare variants of one lookup (policies on/off, serving-log
sampling rates): every case reads the same keys in the same order, rounds are shuffled so
no case always runs first, and drift on a shared machine hits all cases alike.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from online_lookup import ENTITIES, log, percentiles


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
