"""How long lookups fail when a Redis Cluster primary dies, until its replica serves.

A local cluster of 3 primaries with a replica each (`featurestore dev up --redis-cluster 3
--replicas 1`, cluster-node-timeout 2 s), 100 keys spread over it, read in a loop through
``ClusterOnlineStore.read`` every 50 ms; one primary is killed (SIGKILL: a crash) or shut
down (SHUTDOWN NOSAVE), and the time until a lookup of all 100 keys succeeds again is
measured, with the failed lookups counted. Printed as JSON, with the ratio to the node
timeout (the part of the wait Redis's own failure detection takes).

    python benchmarks/cluster_failover.py --runs 3 --kill sigkill
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from _interleaved import log, machine, write_result

from featurestore import devservices
from featurestore.errors import OnlineStoreUnavailable
from featurestore.online.cluster_store import ClusterOnlineStore

NODE_TIMEOUT_S = 2.0  # what `dev up` gives cluster-node-timeout


def one_run(kill: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="cluster-failover-"))
    ports = devservices.free_ports(6, cluster_bus=True)
    url = f"redis://127.0.0.1:{ports[0]}/0"
    devservices.up(url, None, tmp, redis_cluster=3, cluster_replicas=1)
    try:
        store = ClusterOnlineStore.from_url(url)
        keys = [b"bench:%d" % i for i in range(100)]
        store.publish(dict.fromkeys(keys, b"v"))
        victim = redis.Redis(port=ports[0])
        victim.execute_command("WAIT", 1, 2000)  # the replica has every key
        if kill == "sigkill":
            os.kill(int(victim.info("server")["process_id"]), signal.SIGKILL)
        else:
            with contextlib.suppress(redis.ConnectionError):
                victim.shutdown(nosave=True)
        start = time.monotonic()
        failed = 0
        while True:
            try:
                replies = store.read([(b"GET", k) for k in keys])
                break
            except OnlineStoreUnavailable:
                failed += 1
                time.sleep(0.05)
        seconds = time.monotonic() - start
        assert replies == [b"v"] * len(keys)
        store.close()
        return {
            "recovered_s": round(seconds, 2),
            "vs_node_timeout": round(seconds / NODE_TIMEOUT_S, 2),
            "failed_lookups": failed,
        }
    finally:
        devservices.down(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kill", choices=["sigkill", "shutdown", "both"], default="both")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "cluster_failover.json")
    )
    args = parser.parse_args()
    kinds = ["sigkill", "shutdown"] if args.kill == "both" else [args.kill]
    result: dict[str, Any] = {"machine": machine(), "node_timeout_s": NODE_TIMEOUT_S}
    for kind in kinds:
        runs = []
        for _ in range(args.runs):
            runs.append(one_run(kind))
            log(f"{kind}: {runs[-1]}")
        result[kind] = runs
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_result(result, args.out)


if __name__ == "__main__":
    main()
