"""Feast's side of ``benchmarks/pit_join.py``: run in Feast's own virtualenv, never ours.

Builds a throwaway Feast repo over the feature Parquet file that pit_join.py
wrote (the same rows as featurestore's offline store), runs
``get_historical_features`` for the entity rows, writes the result to Parquet
and prints its timing as JSON on stdout (progress goes to stderr).

    /tmp/feast-venv/bin/python benchmarks/_feast_pit.py --store duckdb \
        --features features.parquet --entities entities.parquet --out result.parquet

Feast is not a dependency of featurestore; this file imports only Feast and
what Feast itself pulls in.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from _feast_repo import FEATURES, stats_definitions, write_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", choices=["file", "duckdb"], required=True)
    parser.add_argument("--features", required=True, help="Parquet file of feature rows")
    parser.add_argument("--entities", required=True, help="Parquet file of entity rows")
    parser.add_argument("--out", required=True, help="where to write the last result")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-warmup", action="store_true")
    args = parser.parse_args()

    start = time.perf_counter()
    import feast
    import pandas as pd
    import pyarrow.parquet as pq
    from feast import FeatureStore

    import_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="feast-pit-") as tmp:
        root = Path(tmp)
        write_config(root, "pitbench", redis=None, offline=args.store)
        store = FeatureStore(repo_path=str(root))
        store.apply(stats_definitions(args.features, ttl=timedelta(days=1), online=False))
        entity_df: pd.DataFrame = pq.read_table(args.entities).to_pandas()
        refs = [f"stats:{f}" for f in FEATURES]

        def run() -> object:
            return store.get_historical_features(entity_df=entity_df, features=refs).to_arrow()

        if not args.no_warmup:
            print(f"feast {args.store}: warm-up", file=sys.stderr)
            run()
        samples = []
        result = None
        for i in range(args.repeats):
            t0 = time.perf_counter()
            result = run()
            samples.append(time.perf_counter() - t0)
            print(f"feast {args.store}: run {i + 1}: {samples[-1]:.2f}s", file=sys.stderr)
        pq.write_table(result, args.out)

    print(
        json.dumps(
            {
                "feast_version": feast.__version__,
                "store": args.store,
                "import_s": round(import_s, 2),
                "seconds": [round(s, 4) for s in samples],
                "median_s": round(statistics.median(samples), 4),
                "rows_out": result.num_rows,
                "warmup": not args.no_warmup,
            }
        )
    )


if __name__ == "__main__":
    main()
