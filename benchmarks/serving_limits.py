"""What ``serving.limits`` costs ``featurestore serve``: server CPU time per request.

Servers side by side on one Redis, one worker each, the same lookup (1 entity x 5
features): without limits; with limits set but never hit (a model's and the project's
concurrency and rows/s); with every request refused past its rows/s (429, the cost of
a rejection); and, with ``--base PATH`` (a checkout without limits), the code before.
Requests come from threads of this process, in rounds shuffled over the servers; the
figure is the server process's CPU time (user + system) per request, the median of
the rounds, which a noisy machine changes far less than wall time.

    python benchmarks/serving_limits.py [--base /tmp/limits-base] [--rounds 6]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx
import psutil
from _interleaved import log, machine, start_redis
from online_lookup import REPO_DEFS, feature_rows, wait_port

from featurestore import FeatureStore
from featurestore.devservices import free_port

ROOT = Path(__file__).resolve().parent.parent
LIMITS = {
    "off": "",
    "on, not hit": (
        "serving:\n  limits:\n    default: {concurrent: 1000, rows_per_second: 1000000000}\n"
        "    project: {concurrent: 10000, rows_per_second: 1000000000}\n"
    ),
    "refused (429)": (
        "serving:\n  limits:\n    models:\n"
        "      bench_model: {rows_per_second: 0.001, burst_rows: 1}\n"
    ),
}


def repo_for(folder: Path, redis_url: str, registry: Path, limits: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "defs.py").write_text(REPO_DEFS)
    (folder / "featurestore.yaml").write_text(
        f"project: bench\nregistry: {registry}\nonline_store:\n  redis_url: {redis_url}\n{limits}"
    )
    return folder


def serve(repo: Path, tree: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "featurestore.cli", "serve", "--repo", str(repo)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    wait_port(port)
    return proc, f"http://127.0.0.1:{port}/v1/features"


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def drive(url: str, key: str, body: bytes, requests: int, threads: int) -> dict[int, int]:
    """``requests`` posts from ``threads`` keep-alive connections; answers by status."""
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def run(n: int) -> None:
        seen: dict[int, int] = {}
        with httpx.Client(timeout=10, headers=headers) as client:
            for _ in range(n):
                status = client.post(url, content=body).status_code
                seen[status] = seen.get(status, 0) + 1
        with lock:
            for status, count in seen.items():
                statuses[status] = statuses.get(status, 0) + count

    workers = [threading.Thread(target=run, args=(requests // threads,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", type=Path, help="a checkout without limits, to compare")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=2000, help="per server and round")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    redis_proc, _r, port = start_redis()
    tmp = Path(tempfile.mkdtemp(prefix="serving-limits-"))
    procs: list[subprocess.Popen] = []
    try:
        redis_url = f"redis://127.0.0.1:{port}/0"
        registry = tmp / "registry.db"
        repos = {
            name: repo_for(tmp / f"repo{i}", redis_url, registry, text)
            for i, (name, text) in enumerate(LIMITS.items())
        }
        with FeatureStore(repos["off"]) as store:
            store.apply()
            store.write_online("stats", feature_rows(0))
            _credential, key = store.create_credential("bench_model")
        cases = {name: (repo, ROOT) for name, repo in repos.items()}
        if args.base is not None:
            cases["before (no limits in the code)"] = (repos["off"], args.base.resolve())
        servers: dict[str, tuple[psutil.Process, str]] = {}
        for name, (repo, tree) in cases.items():
            proc, url = serve(repo, tree)
            procs.append(proc)
            servers[name] = (psutil.Process(proc.pid), url)
        body = b'{"model": "bench_model", "entities": [{"entity_id": 7}]}'
        for _process, url in servers.values():  # warm up
            drive(url, key, body, 400, args.threads)
        per_request: dict[str, list[float]] = {name: [] for name in servers}
        statuses: dict[str, dict[int, int]] = {name: {} for name in servers}
        for round_ in range(args.rounds):
            order = list(servers)
            random.Random(round_).shuffle(order)
            for name in order:
                process, url = servers[name]
                before = cpu_seconds(process)
                seen = drive(url, key, body, args.requests, args.threads)
                per_request[name].append((cpu_seconds(process) - before) / sum(seen.values()))
                for status, count in seen.items():
                    statuses[name][status] = statuses[name].get(status, 0) + count
        result: dict[str, Any] = {
            "machine": machine(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "cases": {
                name: {
                    "server_cpu_us_per_request": round(statistics.median(v) * 1e6, 1),
                    "rounds_us": [round(x * 1e6, 1) for x in v],
                    "statuses": statuses[name],
                }
                for name, v in per_request.items()
            },
        }
        for name, case in result["cases"].items():
            log(f"{name}: {case['server_cpu_us_per_request']} us CPU/request {case['statuses']}")
        print(json.dumps(result, indent=2))
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
