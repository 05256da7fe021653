"""CPU per HTTP request of ``featurestore serve``, side by side in one run with the floor
and Feast's server: the server processes' CPU time (psutil, every worker and the master)
before and after a ``wrk`` run, divided by the requests answered.

Data and request as ``online_lookup.py``: 10,000 entities x 5 float64 features, one
lookup of 1 entity x 5 features by model, with an API key. Contenders, each with 1 and 2
workers:

  * ``featurestore serve``;
  * the like-for-like floor: a bare FastAPI handler that parses the body, reads the same
    bytes with one redis.asyncio HMGET and returns the same JSON (``_bare_redis_fastapi.py``);
  * ``feast serve`` (Feast 0.67 in ``--feast-python``), when there.

Besides the server's CPU per request it reports Redis's and the load generator's (``wrk``
runs as a child: its CPU is this process's children's rusage), which tell whether a second
worker can help on this machine at all. ``--profile`` also samples the featurestore
worker with py-spy and prints its CPU per request by phase (the leaf frame's module).

    python benchmarks/serve_cpu.py                       # ~2 min
    python benchmarks/serve_cpu.py --workers 1 --seconds 5 --profile
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
from _interleaved import log, machine, start_redis
from online_lookup import REPO_DEFS, feature_rows, parse_wrk, wait_port, wrk_output

from featurestore.devservices import free_port

ROOT = Path(__file__).resolve().parent
ENTITY = 4242


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU of ``proc`` and every process under it."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def own_cpu_seconds(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return t.user + t.system


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    url: str, body: bytes, headers: dict[str, str], threads: int, connections: int, seconds: int
) -> dict[str, Any]:
    before = children_cpu()
    out = wrk_output(url, body, threads, connections, seconds, headers)
    result = {"wrk_cpu_s": round(children_cpu() - before, 3), **parse_wrk(out)}
    result.pop("socket_errors", None)
    result.pop("p90_ms", None)
    return result


def measure(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    url: str,
    body: bytes,
    headers: dict[str, str],
    redis_proc: psutil.Process,
    args: argparse.Namespace,
    profile: Path | None = None,
) -> dict[str, Any]:
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_port(int(url.split(":")[2].split("/")[0]))
        import httpx

        probe = httpx.post(url, content=body, timeout=5, headers=headers)
        if probe.status_code != 200:
            raise RuntimeError(f"{name}: {probe.status_code} {probe.text[:300]}")
        server = psutil.Process(proc.pid)
        run_wrk(url, body, headers, args.threads, args.connections, 2)  # warm up every worker
        processes = [server, *server.children(recursive=True)]
        each_before = [own_cpu_seconds(p) for p in processes]
        server_before, redis_before = cpu_seconds(server), cpu_seconds(redis_proc)
        load = run_wrk(url, body, headers, args.threads, args.connections, args.seconds)
        server_cpu = cpu_seconds(server) - server_before
        redis_cpu = cpu_seconds(redis_proc) - redis_before
        each = [own_cpu_seconds(p) - b for p, b in zip(processes, each_before, strict=True)]
        n = max(load["requests"], 1)
        result = {
            **load,
            # Cores busy per process (master first), from their CPU time over the run.
            "server_cores_per_process": [round(c / args.seconds, 2) for c in each if c > 0.01],
            "server_cpu_us_per_request": round(server_cpu / n * 1e6, 1),
            "redis_cpu_us_per_request": round(redis_cpu / n * 1e6, 1),
            "wrk_cpu_us_per_request": round(load.pop("wrk_cpu_s") / n * 1e6, 1),
            "load_average": round(os.getloadavg()[0], 2),
        }
        if profile is not None:
            result["profile"] = sample_phases(server, url, body, headers, args, profile)
        log(f"{name}: {result}")
        return result
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# The phase of a sample: the first of these found in its leaf frame's file.
PHASES = (
    ("featurestore/serving/protocol.py", "uvicorn protocol"),
    ("uvicorn/", "uvicorn protocol"),
    ("httptools", "uvicorn protocol"),
    ("featurestore/serving/guard.py", "starlette/fastapi + middleware"),
    ("starlette/", "starlette/fastapi + middleware"),
    ("fastapi/", "starlette/fastapi + middleware"),
    ("featurestore/online/aioredis.py", "redis client"),
    ("featurestore/online/redis_store.py", "redis client"),
    ("asyncio/", "asyncio"),
    ("uvloop", "asyncio"),
    ("prometheus_client/", "metrics"),
    ("featurestore/serving/metrics.py", "metrics"),
    ("featurestore/serving/", "auth + request parsing"),
    ("featurestore/policy/", "auth + request parsing"),
    ("featurestore/online/", "lookup logic"),
)


def sample_phases(
    server: psutil.Process,
    url: str,
    body: bytes,
    headers: dict[str, str],
    args: argparse.Namespace,
    out: Path,
) -> dict[str, Any]:
    """py-spy over the busiest worker during a wrk run: CPU us per request, by phase."""
    # The workers, not the master or multiprocessing's helpers: those that have served.
    workers = [p for p in server.children(recursive=True) if own_cpu_seconds(p) > 0.5] or [server]
    worker = max(workers, key=own_cpu_seconds)
    pid = worker.pid
    spy = subprocess.Popen(
        [
            args.py_spy,
            "record",
            "--format",
            "raw",
            "--rate",
            "500",
            "--nonblocking",
            "-o",
            str(out),
            "-p",
            str(pid),
            "-d",
            str(int(args.seconds) + 2),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)
    before = own_cpu_seconds(worker)
    load = run_wrk(url, body, headers, args.threads, args.connections, args.seconds)
    cpu = own_cpu_seconds(worker) - before
    spy.wait(60)
    counts: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]
        phase = next((p for marker, p in PHASES if marker in leaf), "other")
        if phase == "other":
            phase = "other: " + leaf.split(" (")[-1].split("/")[-1].rstrip(")")
        counts[phase] += int(n)
    total = sum(counts.values()) or 1
    # One worker's requests: with several workers wrk's count is shared, so scale by share.
    share = 1.0 if len(workers) == 1 else 1 / len(workers)
    per_request = cpu / max(load["requests"] * share, 1) * 1e6
    return {
        "worker_cpu_us_per_request": round(per_request, 1),
        "by_phase_us": {
            phase: round(per_request * n / total, 1) for phase, n in counts.most_common(25)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration per case")
    parser.add_argument("--workers", default="1,2", help="server worker counts to run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--feast-python", default="/tmp/feast-venv/bin/python")
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument("--only", help="comma-separated contenders (featurestore,floor,feast)")
    parser.add_argument("--profile", action="store_true", help="py-spy phases of featurestore")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--out", default=str(ROOT / "results" / "serve_cpu.json"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    only = set(args.only.split(",")) if args.only else {"featurestore", "floor", "feast"}
    feast_ok = "feast" in only and not args.skip_feast and Path(args.feast_python).exists()

    from featurestore import FeatureStore
    from featurestore.online.layout import ViewLayout

    result: dict[str, Any] = {"benchmark": "serve_cpu", "machine": machine()}
    result["settings"] = {k: getattr(args, k) for k in ("seconds", "connections", "threads")}
    redis_popen, _r, port = start_redis()
    redis_proc = psutil.Process(redis_popen.pid)
    tmp = Path(tempfile.mkdtemp(prefix="serve_cpu-"))
    try:
        url0 = f"redis://127.0.0.1:{port}/0"
        repo = tmp / "repo"
        repo.mkdir()
        (repo / "featurestore.yaml").write_text(
            f"project: olbench\nregistry: data/registry.db\nonline_store:\n  redis_url: {url0}\n"
        )
        (repo / "defs.py").write_text(REPO_DEFS)
        rows = feature_rows(42)
        features_file = tmp / "features.parquet"
        pq.write_table(rows, features_file)
        with FeatureStore(repo) as store:
            store.apply()
            store.write_online("stats", rows)
            snap = store.snapshot()
            layout = ViewLayout.from_version(snap, snap.view_version("stats"))
            _credential, api_key = store.create_credential("bench_model")
            probe = store.online_client(api_key=api_key).get_online_features(
                [{"entity_id": ENTITY}], model="bench_model"
            )
        bare_body = tmp / "bare.json"
        bare_body.write_bytes(probe.to_json())
        if feast_ok:
            subprocess.run(
                [
                    args.feast_python,
                    str(ROOT / "_feast_online.py"),
                    "setup",
                    "--repo",
                    str(tmp / "feast_repo"),
                    "--redis",
                    f"127.0.0.1:{port},db=1",
                    "--features",
                    str(features_file),
                ],
                capture_output=True,
                check=True,
            )
        ours = json.dumps({"model": "bench_model", "entities": [{"entity_id": ENTITY}]}).encode()
        feast_body = json.dumps(
            {"features": [f"stats:f{i}" for i in range(5)], "entities": {"entity_id": [ENTITY]}}
        ).encode()
        json_header = {"Content-Type": "application/json"}
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        result["http"] = {}
        for workers in [int(w) for w in args.workers.split(",")]:
            cases: dict[str, Any] = {}
            w = str(workers)
            if "featurestore" in only:
                p = free_port()
                cases["featurestore"] = measure(
                    "featurestore",
                    [
                        sys.executable,
                        "-m",
                        "featurestore.cli",
                        "serve",
                        "--repo",
                        str(repo),
                        "--port",
                        str(p),
                        "--workers",
                        w,
                    ],
                    env,
                    f"http://127.0.0.1:{p}/v1/features",
                    ours,
                    {**json_header, "Authorization": f"Bearer {api_key}"},
                    redis_proc,
                    args,
                    Path(args.out).with_suffix(f".profile-{w}.txt") if args.profile else None,
                )
            if "floor" in only:
                p = free_port()
                cases["floor_fastapi_redis"] = measure(
                    "floor_fastapi_redis",
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "benchmarks._bare_redis_fastapi:app",
                        "--port",
                        str(p),
                        "--workers",
                        w,
                        "--log-level",
                        "warning",
                        "--no-access-log",
                    ],
                    {
                        **env,
                        "PYTHONPATH": str(ROOT.parent),
                        "BARE_RESPONSE": str(bare_body),
                        "BARE_REDIS_URL": url0,
                        "BARE_KEY": (layout.prefix + str(ENTITY).encode()).decode(),
                        "BARE_FIELD": layout.field.decode(),
                    },
                    f"http://127.0.0.1:{p}/v1/features",
                    ours,
                    json_header,
                    redis_proc,
                    args,
                )
            if feast_ok:
                p = free_port()
                cases["feast_serve"] = measure(
                    "feast_serve",
                    [
                        args.feast_python,
                        str(ROOT / "_feast_online.py"),
                        "serve",
                        "--repo",
                        str(tmp / "feast_repo"),
                        "--port",
                        str(p),
                        "--workers",
                        w,
                    ],
                    env,
                    f"http://127.0.0.1:{p}/get-online-features",
                    feast_body,
                    json_header,
                    redis_proc,
                    args,
                )
            result["http"][f"{w}_workers"] = cases
    finally:
        redis_popen.terminate()
        redis_popen.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    result["ratios"] = ratios(result["http"])
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)


def ratios(http: dict[str, dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for workers, cases in http.items():
        fs = cases.get("featurestore")
        if fs is None:
            continue
        for other in ("floor_fastapi_redis", "feast_serve"):
            if other in cases:
                out[f"{workers}_featurestore_over_{other}_rps"] = round(
                    fs["requests_per_s"] / cases[other]["requests_per_s"], 2
                )
    one, two = http.get("1_workers", {}), http.get("2_workers", {})
    if "featurestore" in one and "featurestore" in two:
        out["featurestore_2_over_1_workers_rps"] = round(
            two["featurestore"]["requests_per_s"] / one["featurestore"]["requests_per_s"], 2
        )
    return out


if __name__ == "__main__":
    main()
