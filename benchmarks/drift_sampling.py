"""What the serving log costs a lookup: no drift monitor vs sampling 1% and 100%.

The same model and data, in three registries of one project on one Redis: without a
``DriftMonitor`` (no sampling, no drift status), and with one sampling 1% and 100% of
lookups into the serving log (a random draw per lookup; a sampled lookup encodes its
response and appends it to a queue that a background thread writes to a Redis stream;
every lookup also carries the drift status, read in its own round trip at most once a
second). Interleaved rounds against a bare redis-py pipeline, as ``policy_lookup.py``.

    python benchmarks/drift_sampling.py [--calls 20000]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _interleaved import (
    bench_redis,
    bench_repo,
    compare_lookups,
    machine,
    ratio,
    redis_floor,
    variant_args,
    write_result,
)
from online_lookup import REPO_DEFS, feature_rows


def monitored(rate: float) -> str:
    return REPO_DEFS + (
        "\nfrom featurestore import DriftMonitor\n"
        f"watch = DriftMonitor(name='watch', model=model, sample_rate={rate})\n"
    )


def main() -> None:
    args = variant_args("drift_sampling", __doc__)

    from featurestore import FeatureStore
    from featurestore.online.layout import ViewLayout

    result: dict[str, Any] = {"benchmark": "drift_sampling", "machine": machine()}
    with bench_redis("drift_sampling") as (r, url, tmp):
        stores = {
            "no_monitor": FeatureStore(bench_repo(tmp / "off", url, REPO_DEFS)),
            "sample_1pct": FeatureStore(bench_repo(tmp / "one", url, monitored(0.01))),
            "sample_100pct": FeatureStore(bench_repo(tmp / "all", url, monitored(1.0))),
        }
        for store in stores.values():
            store.apply()
        stores["no_monitor"].write_online("stats", feature_rows(args.seed))
        clients = {name: (s.online_client(), "bench_model") for name, s in stores.items()}
        snap = stores["no_monitor"].snapshot()
        layout = ViewLayout.from_version(snap, snap.view_version("stats"))
        timings = compare_lookups(
            clients,
            redis_floor(r, layout.prefix, layout.field),
            calls=args.calls,
            rounds=args.rounds,
            seed=args.seed,
        )
        for n, stats in timings.items():
            stats["ratios"] = {
                "sample_1pct_vs_no_monitor_p50": ratio(stats, "sample_1pct", "no_monitor"),
                "sample_100pct_vs_no_monitor_p50": ratio(stats, "sample_100pct", "no_monitor"),
                "sample_100pct_vs_no_monitor_p99": ratio(
                    stats, "sample_100pct", "no_monitor", "p99_ms"
                ),
                "no_monitor_vs_floor_p50": ratio(stats, "no_monitor", "floor_redis_pipeline"),
            }
            result[n] = stats
        for name, (client, _model) in clients.items():
            client.close()  # flushes the serving log
            if "serving_log" in client.__dict__:
                log = client.serving_log
                result.setdefault("serving_log", {})[name] = {
                    "written": log.written,
                    "dropped": log.dropped,
                }
        result["stream_entries"] = r.xlen(b"fs:bench:@served:bench_model")
        for store in stores.values():
            store.close()
    write_result(result, args.out)


if __name__ == "__main__":
    main()
