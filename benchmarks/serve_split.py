"""How ``featurestore serve --workers 2`` splits a burst of new connections between its
workers: ``--trials`` times, open ``--connections`` connections at once (as ``wrk`` does at
start), send one ``GET /healthz`` on each, count each worker's established connections
(psutil), close them. Prints the count of trials per split, e.g. ``"5/3": 63``.

With one shared listening socket (uvicorn's workers) whichever worker wakes first accepts
the burst; with a socket per worker (``SO_REUSEPORT``) the kernel hashes each connection to
a worker, a binomial split (8 connections: 8/0 in 0.8% of trials, 7/1 in 6%).

    python benchmarks/serve_split.py                 # ~30 s
    PYTHONPATH=/path/to/other/tree python benchmarks/serve_split.py   # another version
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
from _interleaved import machine, start_redis
from online_lookup import REPO_DEFS, wait_port

from featurestore.devservices import free_port


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from featurestore import FeatureStore

    redis_proc, _r, redis_port = start_redis()
    tmp = Path(tempfile.mkdtemp(prefix="serve_split-"))
    repo = tmp / "repo"
    repo.mkdir()
    (repo / "featurestore.yaml").write_text(
        "project: split\nregistry: data/registry.db\nonline_store:\n"
        f"  redis_url: redis://127.0.0.1:{redis_port}/0\n"
    )
    (repo / "defs.py").write_text(REPO_DEFS)
    with FeatureStore(repo) as store:
        store.apply()
    port = free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "featurestore.cli", "serve", "--repo", str(repo)),
            *("--port", str(port), "--workers", str(args.workers)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_port(port)
        time.sleep(3)  # every worker up
        parent = psutil.Process(server.pid)
        workers = [  # with uvicorn's workers too: each has the shared socket's fd
            p
            for p in parent.children()
            if any(c.status == psutil.CONN_LISTEN for c in p.net_connections("tcp"))
        ]
        splits: Counter[str] = Counter()
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        for _ in range(args.trials):
            socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(args.connections)]
            for s in socks:
                s.sendall(request)
            for s in socks:
                s.recv(4096)
            counts = sorted(
                (
                    sum(
                        1
                        for c in w.net_connections("tcp")
                        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
                    )
                    for w in workers
                ),
                reverse=True,
            )
            splits["/".join(map(str, counts))] += 1
            for s in socks:
                s.close()
            time.sleep(0.05)
        result = {
            "benchmark": "serve_split",
            "machine": machine(),
            "settings": vars(args),
            "load_average": round(os.getloadavg()[0], 2),
            "splits": dict(sorted(splits.items())),
        }
        print(json.dumps(result, indent=2))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        redis_proc.terminate()
        redis_proc.wait(10)


if __name__ == "__main__":
    main()
