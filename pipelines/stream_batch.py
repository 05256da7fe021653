"""The batch side of a streaming view on Spark, runnable (e.g. by ``spark-submit``):
``python -m pipelines.stream_batch --repo feature_repo VIEW [--from log|source]``. The
job is ``featurestore.streaming.spark_batch``; ``featurestore stream backfill`` runs it."""

from __future__ import annotations

import argparse

import orjson

from featurestore.store import FeatureStore
from featurestore.streaming.spark_batch import SOURCES, backfill


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".", help="feature repo folder")
    parser.add_argument("view", help="the streaming view")
    parser.add_argument("--from", dest="source", default="source", choices=SOURCES)
    args = parser.parse_args(argv)
    with FeatureStore(args.repo) as store:
        result = backfill(store, args.view, source=args.source, progress=print)
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
