"""Feast's side of ``benchmarks/materialize.py``: run in Feast's own virtualenv.

    setup   --repo DIR --redis HOST:PORT[,db=N] --features FILE   apply the repo
    inproc  --repo DIR --start ISO --end ISO                      time store.materialize()

(The command-line case runs ``feast -c DIR materialize START END`` directly.)
Prints JSON on stdout. Feast is never a dependency of featurestore.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from datetime import datetime, timedelta
from pathlib import Path

from _feast_repo import stats_definitions, write_config


def setup(args: argparse.Namespace) -> None:
    from feast import FeatureStore

    root = Path(args.repo)
    write_config(root, "matbench", redis=args.redis)
    store = FeatureStore(repo_path=str(root))
    store.apply(stats_definitions(args.features, ttl=timedelta(days=60), online=True))
    print(json.dumps({"ok": True}))


def inproc(args: argparse.Namespace) -> None:
    from feast import FeatureStore

    store = FeatureStore(repo_path=args.repo)
    start = time.perf_counter()
    store.materialize(
        start_date=datetime.fromisoformat(args.start), end_date=datetime.fromisoformat(args.end)
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(seconds, 3), "peak_rss_mb": round(peak, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["setup", "inproc"])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--redis")
    parser.add_argument("--features")
    parser.add_argument("--start")
    parser.add_argument("--end")
    args = parser.parse_args()
    {"setup": setup, "inproc": inproc}[args.mode](args)


if __name__ == "__main__":
    main()
