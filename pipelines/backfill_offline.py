"""Local backfill of batch views (``featurestore.materialize.backfill``), runnable:
``python -m pipelines.backfill_offline --repo feature_repo [VIEW ...] [--online]``."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from featurestore.materialize.backfill import backfill
from featurestore.store import FeatureStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".", help="feature repo folder")
    parser.add_argument("views", nargs="*", help="views (default: every batch view)")
    parser.add_argument("--start", type=datetime.fromisoformat, default=None)
    parser.add_argument("--end", type=datetime.fromisoformat, default=None)
    parser.add_argument(
        "--online", action="store_true", help="also write each entity's latest row to Redis"
    )
    args = parser.parse_args()
    start = args.start.replace(tzinfo=args.start.tzinfo or UTC) if args.start else None
    end = args.end.replace(tzinfo=args.end.tzinfo or UTC) if args.end else None
    with FeatureStore(args.repo) as store:
        backfill(
            store, args.views or None, start=start, end=end, progress=print, online=args.online
        )


if __name__ == "__main__":
    main()
