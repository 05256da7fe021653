"""Test-only: post one lookup at a steady rate from threads until stdin closes, then print
a JSON summary (requests per status, Retry-After values seen, seconds it ran).

    python tests/flood.py URL KEY BODY_JSON REQUESTS_PER_SECOND THREADS

Prints ``ready`` once the first answer came back. A process of its own, so its threads
do not share an interpreter lock with the client whose latency a test measures.
"""

from __future__ import annotations

import collections
import json
import sys
import threading
import time

import httpx


def main(argv: list[str]) -> None:
    url, key, body, rate, threads = argv[0], argv[1], argv[2].encode(), float(argv[3]), int(argv[4])
    stop = threading.Event()
    lock = threading.Lock()
    statuses: collections.Counter[int] = collections.Counter()
    retry_after: collections.Counter[str] = collections.Counter()
    answered = threading.Event()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    interval = threads / rate  # each thread's share of the rate
    start = time.monotonic()

    def flood(i: int) -> None:
        next_at = start + i / threads * interval
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                next_at += interval
                response = client.post(url, content=body, headers=headers)
                with lock:
                    statuses[response.status_code] += 1
                    if "retry-after" in response.headers:
                        retry_after[response.headers["retry-after"]] += 1
                answered.set()

    workers = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    answered.wait(30)
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes it
    stop.set()
    for worker in workers:
        worker.join(15)
    print(
        json.dumps(
            {
                "statuses": {str(k): v for k, v in statuses.items()},
                "retry_after": dict(retry_after),
                "seconds": time.monotonic() - start,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
