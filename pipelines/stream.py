"""The Kafka stream consumer, runnable (e.g. as a container's command):
``python -m pipelines.stream --repo feature_repo VIEW [VIEW ...]``. The consumer is
``featurestore.streaming.consumer``; ``featurestore stream`` runs the same."""

from __future__ import annotations

import argparse

from featurestore.store import FeatureStore
from featurestore.streaming.consumer import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".", help="feature repo folder")
    parser.add_argument("views", nargs="+", help="streaming views to consume")
    parser.add_argument("--group", default=None, help="consumer group (default: per view)")
    parser.add_argument("--flush-seconds", type=float, default=5.0)
    parser.add_argument("--metrics-port", type=int, default=None)
    args = parser.parse_args(argv)
    with FeatureStore(args.repo) as store:
        run(
            store,
            args.views,
            group=args.group,
            flush_seconds=args.flush_seconds,
            metrics_port=args.metrics_port,
            progress=print,
        )


if __name__ == "__main__":
    main()
