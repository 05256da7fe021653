"""The batch materialization job, runnable (e.g. by ``spark-submit`` or a scheduler):
``python -m pipelines.materialize --repo feature_repo [VIEW ...] [--engine spark]``.
The job is ``featurestore.materialize.job``; ``featurestore materialize`` runs the same."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from featurestore.materialize.engines import NAMES
from featurestore.materialize.job import materialize
from featurestore.store import FeatureStore


def _utc(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=parsed.tzinfo or UTC)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".", help="feature repo folder")
    parser.add_argument("views", nargs="*", help="views (default: every batch view)")
    parser.add_argument("--start", default=None, help="window start, ISO (UTC if no zone)")
    parser.add_argument("--end", default=None, help="window end, exclusive (default: now)")
    parser.add_argument("--incremental", action="store_true", help="start at each watermark")
    parser.add_argument("--engine", default="auto", choices=NAMES)
    args = parser.parse_args(argv)
    with FeatureStore(args.repo) as store:
        materialize(
            store,
            args.views or None,
            start=_utc(args.start),
            end=_utc(args.end),
            incremental=args.incremental,
            engine=args.engine,
            progress=print,
        )


if __name__ == "__main__":
    main()
