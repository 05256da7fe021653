"""Send card transactions to the inference service, as a payment system would.

    python -m examples.fraud_inference.traffic --url http://127.0.0.1:8000 \\
        --repo feature_repo labels --count 1000
    python -m examples.fraud_inference.traffic --url http://127.0.0.1:8000 \\
        --repo feature_repo live --count 2000 --amount-scale 10

``labels``: transactions drawn from the labelled history (what the model was trained on).
``live``: new transactions, produced to Kafka (the stream consumer updates the users'
windows) and scored once the consumer has taken them, in ``--chunks`` steps;
``--spread-minutes`` stamps them over the last minutes (as at the history's rate)
instead of as one burst, ``--score-last-minutes`` scores only the latest (whose windows
are full), and ``--amount-scale`` shifts their amounts. Prints how many were scored by
the model or the fallback, and the last drift status the service returned.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path
from typing import Any

import httpx


def from_labels(repo: Path, count: int, seed: int) -> list[dict[str, Any]]:
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(
        repo / "data" / "labels.parquet",
        columns=["transaction_id", "user_id", "merchant_id", "amount", "event_timestamp"],
    )
    rng = np.random.default_rng(seed)
    picked = table.take(rng.choice(table.num_rows, size=min(count, table.num_rows), replace=False))
    return [
        {**row, "event_timestamp": row["event_timestamp"].isoformat()} for row in picked.to_pylist()
    ]


def live(
    repo: Path,
    url: str,
    count: int,
    *,
    amount_scale: float = 1.0,
    spread_minutes: float = 0.0,
    chunks: int = 1,
    score_last_minutes: float = 0.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Produce ``count`` events in ``chunks`` (in time order); once the consumer has
    written each chunk online, score its transactions, as a payment system scores each
    as it happens (the features then are those of that moment, not of the end of the
    run)."""
    from datetime import UTC, datetime, timedelta

    from featurestore import FeatureStore
    from pipelines.generate_data import GeneratorSettings, live_events, produce_events

    settings = GeneratorSettings()
    spread = timedelta(minutes=spread_minutes) if spread_minutes else None
    events = live_events(settings, count, seed=seed, amount_scale=amount_scale, spread=spread)
    since = (datetime.now(UTC) - timedelta(minutes=score_last_minutes)).isoformat()
    size = -(-len(events) // max(chunks, 1))
    results = []
    with FeatureStore(repo) as store:
        client = store.online_client()
        for start in range(0, len(events), size):
            chunk = events[start : start + size]
            produce_events(store.config, settings, len(chunk), events=chunk)
            wait_online(client, chunk)
            scored = [e for e in chunk if not score_last_minutes or e["event_timestamp"] >= since]
            results.append(send(url, scored))
        client.close()
    return merge(results)


def wait_online(client: Any, chunk: list[dict[str, Any]], timeout: float = 60.0) -> None:
    """Until the consumer has written every user's windows up to their last event here."""
    from datetime import datetime

    last = {e["user_id"]: datetime.fromisoformat(e["event_timestamp"]) for e in chunk}
    users = list(last)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get_online_features(
            [{"user_id": u} for u in users], features=["user_txn_stats:count_1h"]
        )
        times = response.event_times()["count_1h"]
        if all(t is not None and t >= last[u] for u, t in zip(users, times, strict=True)):
            return
        time.sleep(0.02)
    raise SystemExit("the stream consumer did not take the events within 60 s; is it running?")


def send(url: str, transactions: list[dict[str, Any]]) -> dict[str, Any]:
    modes: collections.Counter[str] = collections.Counter()
    last: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=10) as client:
        for t in transactions:
            response = client.post("/predict", json=t)
            response.raise_for_status()
            last = response.json()
            modes[last["mode"]] += 1
    return {"modes": modes, "last": last, "count": len(transactions)}


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    modes: collections.Counter[str] = collections.Counter()
    for r in results:
        modes.update(r["modes"])
    last = next((r["last"] for r in reversed(results) if r["last"]), {})
    return {"modes": modes, "last": last, "count": sum(r["count"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--repo", type=Path, default=Path("feature_repo"))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seed", type=int, default=int(time.time()))
    sub = parser.add_subparsers(dest="kind", required=True)
    labels = sub.add_parser("labels", parents=[common])
    labels.add_argument("--count", type=int, default=1000)
    shifted = sub.add_parser("live", parents=[common])
    shifted.add_argument("--count", type=int, default=2000)
    shifted.add_argument("--amount-scale", type=float, default=1.0)
    shifted.add_argument(
        "--spread-minutes",
        type=float,
        default=0.0,
        help="stamp the events evenly over this many minutes before now (default: a burst)",
    )
    shifted.add_argument(
        "--chunks", type=int, default=1, help="produce and score in this many steps"
    )
    shifted.add_argument(
        "--score-last-minutes",
        type=float,
        default=0.0,
        help="score only the events of the last this many minutes (default: all)",
    )
    args = parser.parse_args()
    if args.kind == "labels":
        result = send(args.url, from_labels(args.repo, args.count, args.seed))
    else:
        result = live(
            args.repo,
            args.url,
            args.count,
            amount_scale=args.amount_scale,
            spread_minutes=args.spread_minutes,
            chunks=args.chunks,
            score_last_minutes=args.score_last_minutes,
            seed=args.seed,
        )
    drift = result["last"].get("drift", {})
    flagged = ", ".join(f"{f} {s}" for f, s in drift.get("features", {}).items())
    print(
        f"{result['count']:,} transactions scored: "
        + ", ".join(f"{n:,} by the {mode}" for mode, n in sorted(result["modes"].items()))
        + f"; drift status {drift.get('status')}"
        + (f" ({flagged})" if flagged else "")
    )


if __name__ == "__main__":
    main()
