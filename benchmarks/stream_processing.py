"""The stream consumer's own work per event, without Kafka or I/O: CPU time of
``StreamProcessor.process`` (parse, per-event checks, 7 window aggregations) over the same
generated events as ``benchmarks/stream.py``'s view.

Run it with another checkout first on the path to compare two versions on this machine in
one sitting (what the input bounds and the offset check cost per event, for example):

    python benchmarks/stream_processing.py                         # this tree
    PYTHONPATH=../other python benchmarks/stream_processing.py     # another tree's code

Prints JSON: CPU microseconds per event (best and median of ``--rounds``) and events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/stream.py
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import featurestore
from featurestore.definitions import FeatureView
from featurestore.streaming.landing import StreamPosition
from featurestore.streaming.processor import StreamProcessor


def view() -> FeatureView:
    """benchmarks/stream.py's view (7 windows, 2 per-event expectations)."""
    # Imported after featurestore: stream.py puts this tree first on the path, and the
    # code measured must stay the one PYTHONPATH chose.
    from stream import DEFS

    namespace: dict[str, object] = {}
    exec(DEFS, namespace)
    found = namespace["velocity"]
    assert isinstance(found, FeatureView)
    return found


def events(n: int, users: int) -> list[bytes]:
    """``n`` events over the last two hours, in time order (none late, none ahead)."""
    from stream import event

    start = time.time() - 7200
    return [event(i, users, start + i * 7200 / n) for i in range(n)]


def one_round(v: FeatureView, raw: list[bytes]) -> float:
    proc = StreamProcessor(v, v.source)  # type: ignore[arg-type]
    proc.assign(0, StreamPosition(), StreamPosition())
    process = proc.process
    began = time.process_time()
    for offset, value in enumerate(raw):
        process(0, offset, value)
    return time.process_time() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    v = view()
    raw = events(args.events, args.users)
    seconds = [one_round(v, raw) for _ in range(args.rounds)]
    per_event = [s / args.events * 1e6 for s in seconds]
    print(
        json.dumps(
            {
                "benchmark": "stream_processing",
                "code": str(Path(featurestore.__file__).resolve().parent.parent),
                "load_average": os.getloadavg(),
                "events": args.events,
                "cpu_us_per_event": {
                    "best": round(min(per_event), 3),
                    "median": round(statistics.median(per_event), 3),
                },
                "events_per_s_best": round(args.events / min(seconds)),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
