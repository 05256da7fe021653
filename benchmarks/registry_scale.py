"""The registry at platform scale, side by side with Feast 0.67 in one run.

Generated repos (benchmarks/_registry_repo.py): V views of 10 Float64 features on one
entity, each on its own ParquetSource, and M models each reading one service of 3 views;
Feast gets the same views and one feature service per model (it has no model object).
Per scale and layout, every command runs as a user runs it (its own process, measured
with wait4: wall, CPU, peak RSS):

* featurestore: ``plan`` and ``apply`` into an empty registry, ``plan``/``apply`` again
  with nothing changed, then ``plan``/``apply`` after one view's dtype changed;
* Feast: ``feast plan``, ``feast apply``, ``feast apply`` again, and after the same one
  change; and its registry load (``FeatureStore`` + list services and views);
* both: loading the registry in a fresh process (featurestore ``Registry.snapshot``);
* serving (featurestore): ``featurestore serve`` start to ready (``/readyz``), its RSS, and
  HTTP lookups of one model (keep-alive, one entity) against this registry vs a small one
  of the same shape (10 views, 100 models), both servers up at once, rounds alternated.

Then many tenants in one registry database (SQLite, and PostgreSQL when its binaries are
installed): T projects of M models each, applied one after another; then tenant B's
one-change apply and its serial polls (what servers do), alone and while tenant A's big
first apply runs in another process.

    python benchmarks/registry_scale.py                        # ~25 min with Feast
    python benchmarks/registry_scale.py --scales 1000x10000 --skip-feast --tenants 10x1000
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
from _interleaved import log, machine, percentiles, start_redis, write_result
from _registry_repo import write_feast_repo, write_repo

from featurestore.registry import Registry
from featurestore.repo import load_repo

ROOT = Path(__file__).resolve().parent
FEATURESTORE = [sys.executable, "-m", "featurestore.cli"]

_FEAST_LOAD = """
import sys, time
t0 = time.perf_counter()
from feast import FeatureStore
store = FeatureStore(repo_path=sys.argv[1])
services = store.list_feature_services()
views = store.list_feature_views()
print(round(time.perf_counter() - t0, 3), len(services), len(views))
"""

_FS_LOAD = """
import sys, time
t0 = time.perf_counter()
from featurestore.registry import Registry
snapshot = Registry(sys.argv[1]).snapshot(sys.argv[2])
print(round(time.perf_counter() - t0, 3), len(snapshot.active("model")), len(snapshot.versions))
"""


def run(cmd: list[str], cwd: Path, timeout: float) -> dict[str, Any]:
    """One command in its own process: wall and CPU seconds, peak RSS, exit status."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        out = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    result: dict[str, Any] = {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }
    if wall >= timeout:
        result["timed_out_after_s"] = timeout
    elif proc.returncode != 0:
        tail = out.decode(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {tail}")
    result["last_line"] = (out.decode(errors="replace").strip().splitlines() or [""])[-1][:200]
    return result


def featurestore_scale(
    root: Path, views: int, models: int, layout: str, redis_url: str | None, calls: int
) -> dict[str, Any]:
    repo = write_repo(root, views=views, models=models, layout=layout)
    out: dict[str, Any] = {}
    steps = [("plan_empty", "plan"), ("apply_first", "apply"), ("plan_no_change", "plan")]
    steps += [("apply_no_change", "apply")]
    for label, verb in steps:
        out[label] = run([*FEATURESTORE, verb, "-r", str(repo)], repo, 3600)
        log(f"  featurestore {views}/{models} {layout} {label}: {out[label]['wall_s']} s")
    write_repo(root, views=views, models=models, layout=layout, changed_view=views // 2)
    for label, verb in (("plan_one_change", "plan"), ("apply_one_change", "apply")):
        out[label] = run([*FEATURESTORE, verb, "-r", str(repo)], repo, 3600)
        log(f"  featurestore {views}/{models} {layout} {label}: {out[label]['wall_s']} s")
    url = f"sqlite:///{repo}/data/registry.db"
    load = run([sys.executable, "-c", _FS_LOAD, url, "scale"], repo, 600)
    out["snapshot_load"] = {**load, "in_process_s": float(load["last_line"].split()[0])}
    if redis_url:
        out["serving"] = serving(repo, root.parent / f"{root.name}_serving", redis_url, calls)
        log(f"  featurestore {views}/{models} {layout} serving: {out['serving']}")
    return out


def feast_scale(
    root: Path, views: int, services: int, layout: str, feast_python: str, timeout: float
) -> dict[str, Any]:
    repo = write_feast_repo(root, views=views, services=services, layout=layout)
    (repo / "data").mkdir(exist_ok=True)
    feast = [str(Path(feast_python).parent / "feast"), "-c", str(repo)]
    out: dict[str, Any] = {}
    steps = [("plan_empty", "plan"), ("apply_first", "apply"), ("apply_no_change", "apply")]
    for label, verb in steps:
        out[label] = run([*feast, verb], repo, timeout)
        log(f"  feast {views}/{services} {layout} {label}: {out[label]['wall_s']} s")
        if "timed_out_after_s" in out[label]:
            return out  # what follows needs this step's result
    write_feast_repo(root, views=views, services=services, layout=layout, changed_view=views // 2)
    for label, verb in (("plan_one_change", "plan"), ("apply_one_change", "apply")):
        out[label] = run([*feast, verb], repo, timeout)
        log(f"  feast {views}/{services} {layout} {label}: {out[label]['wall_s']} s")
        if "timed_out_after_s" in out[label]:
            return out
    load = run([feast_python, "-c", _FEAST_LOAD, str(repo)], repo, timeout)
    if "timed_out_after_s" not in load:
        load["in_process_s"] = float(load["last_line"].split()[0])
    out["registry_load"] = load
    return out


def ratios(fs: dict[str, Any], feast: dict[str, Any]) -> dict[str, float]:
    """featurestore's wall time over Feast's, per step both ran (< 1: featurestore faster)."""
    return {
        step: round(fs[step]["wall_s"] / feast[step]["wall_s"], 3)
        for step in fs
        if step in feast and "timed_out_after_s" not in feast[step] and feast[step]["wall_s"]
    }


# -- serving -------------------------------------------------------------------------


def start_server(repo: Path, redis_url: str) -> tuple[subprocess.Popen[bytes], int, float, str]:
    """``featurestore serve`` on ``repo``: the process, its port, seconds to ready, a key."""
    from featurestore import FeatureStore
    from featurestore.devservices import free_port

    text = (repo / "featurestore.yaml").read_text()
    (repo / "featurestore.yaml").write_text(text.replace("redis://127.0.0.1:6379/0", redis_url))
    with FeatureStore(repo) as store:
        _credential, key = store.create_credential("model_0")
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*FEATURESTORE, "serve", "-r", str(repo), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"featurestore serve on {repo} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc, port, time.perf_counter() - t0, key
        except OSError:
            pass
        time.sleep(0.02)


def http_lookups(port: int, key: str, calls: int) -> list[float]:
    body = orjson.dumps({"model": "model_0", "entities": {"user_id": [1]}})
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        conn.request("POST", "/v1/features", body, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"lookup answered {response.status}")
        samples.append(time.perf_counter() - t0)
    return samples


def serving(big: Path, work: Path, redis_url: str, calls: int) -> dict[str, Any]:
    small = write_repo(work / "small_registry", views=10, models=100)
    run([*FEATURESTORE, "apply", "-r", str(small)], small, 600)
    servers = {}
    out: dict[str, Any] = {}
    try:
        for name, repo in (("big", big), ("small", small)):
            proc, port, ready, key = start_server(repo, redis_url)
            servers[name] = (proc, port, key)
            out[f"{name}_start_to_ready_s"] = round(ready, 2)
        samples: dict[str, list[float]] = {"big": [], "small": []}
        for _ in range(10):  # alternate rounds: both see the same machine load
            for name, (_proc, port, key) in servers.items():
                samples[name] += http_lookups(port, key, max(1, calls // 10))
        for name, (proc, _port, _key) in servers.items():
            out[f"{name}_rss_mb"] = round(psutil.Process(proc.pid).memory_info().rss / 2**20)
            out[f"{name}_lookup"] = percentiles(samples[name])
        out["lookup_p50_big_over_small"] = round(
            out["big_lookup"]["p50_ms"] / out["small_lookup"]["p50_ms"], 3
        )
    finally:
        for proc, _port, _key in servers.values():
            proc.terminate()
            proc.wait(30)
    return out


# -- many tenants -----------------------------------------------------------------------

_BIG_APPLY = """
import sys
from featurestore.registry import Registry
from featurestore.repo import load_repo
Registry(sys.argv[1]).apply(load_repo(sys.argv[2]))
"""


def polls(registry: Registry, project: str, seconds: float) -> dict[str, float]:
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        registry.serial(project)
        samples.append(time.perf_counter() - t0)
        time.sleep(0.005)
    return percentiles(samples)


def one_change_apply(registry: Registry, repo: Path, models: int, flip: int) -> float:
    """View 0's dtype flipped (Float32 on odd flips): one new version per apply."""
    write_repo(
        repo,
        views=10,
        models=models,
        project="tenant_b",
        changed_view=0 if flip % 2 else None,
    )
    contents = load_repo(repo)
    t0 = time.perf_counter()
    result = registry.apply(contents)
    if len(result.plan.pending) != 1:
        raise RuntimeError(f"expected one change, got {len(result.plan.pending)}")
    return time.perf_counter() - t0


def tenants(url: str, work: Path, count: int, models: int) -> dict[str, Any]:
    registry = Registry(url)
    times = []
    for n in range(count):
        name = "tenant_b" if n == 0 else f"tenant_{n:03d}"
        repo = write_repo(work / name, views=10, models=models, project=name)
        contents = load_repo(repo)
        t0 = time.perf_counter()
        registry.apply(contents)
        times.append(time.perf_counter() - t0)
    log(f"  {count} tenants applied, p50 {statistics.median(times):.2f} s")
    b_repo = work / "tenant_b"
    alone = {"polls": polls(registry, "tenant_b", 3.0)}
    alone["one_change_apply_s"] = round(
        statistics.median(one_change_apply(registry, b_repo, models, i + 1) for i in range(3)), 3
    )
    big = write_repo(work / "tenant_a", views=2000, models=20_000, project="tenant_a")
    load_repo(big)  # its bytecode cached, as on a second run
    proc = subprocess.Popen([sys.executable, "-c", _BIG_APPLY, url, str(big)])
    during: dict[str, Any] = {"polls": polls(registry, "tenant_b", 2.0)}
    applies = []
    while proc.poll() is None:
        applies.append(one_change_apply(registry, b_repo, models, len(applies)))
    during["one_change_apply_s"] = round(statistics.median(applies), 3) if applies else None
    during["tenant_b_applies_during_a"] = len(applies)
    if proc.wait() != 0:
        raise RuntimeError("tenant A's apply failed")
    registry.close()
    return {
        "tenants": count,
        "models_per_tenant": models,
        "apply_first_s": {
            "p50": round(statistics.median(times), 3),
            "max": round(max(times), 3),
            "total": round(sum(times), 1),
        },
        "tenant_b_alone": alone,
        "tenant_b_during_tenant_a_first_apply_20k_models": during,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", default="1000x10000,10000x100000", help="VIEWSxMODELS,...")
    parser.add_argument(
        "--one-file-at",
        default="1000x10000",
        help="scales also run with every definition in one file",
    )
    parser.add_argument("--tenants", default="100x1000", help="TENANTSxMODELS, or 'none'")
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument("--feast-python", default="/tmp/feast-venv/bin/python")
    parser.add_argument("--feast-timeout", type=float, default=900.0, help="per Feast command")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--calls", type=int, default=4000, help="HTTP lookups per server")
    parser.add_argument("--out", default=str(ROOT / "results" / "registry_scale.json"))
    args = parser.parse_args()

    result: dict[str, Any] = {"machine": machine(), "scales": {}}
    work = Path(tempfile.mkdtemp(prefix="registry-scale-"))
    redis = None if args.skip_serving else start_redis()
    redis_url = f"redis://127.0.0.1:{redis[2]}/0" if redis else None
    one_file = set(args.one_file_at.split(",")) if args.one_file_at else set()
    try:
        for scale in args.scales.split(","):
            views, models = (int(x) for x in scale.split("x"))
            layouts = ["split", "one-file"] if scale in one_file else ["split"]
            for layout in layouts:
                key = f"{views}_views_{models}_models_{layout}"
                entry: dict[str, Any] = {"load_average_at_start": os.getloadavg()[0]}
                entry["featurestore"] = featurestore_scale(
                    work / key, views, models, layout, redis_url, args.calls
                )
                shutil.rmtree(work / key)
                if not args.skip_feast and Path(args.feast_python).exists():
                    entry["feast"] = feast_scale(
                        work / f"feast_{key}",
                        views,
                        models,
                        layout,
                        args.feast_python,
                        args.feast_timeout,
                    )
                    shutil.rmtree(work / f"feast_{key}")
                    entry["featurestore_over_feast_wall"] = ratios(
                        entry["featurestore"], entry["feast"]
                    )
                result["scales"][key] = entry
        result["growth"] = growth(result["scales"])
        if args.tenants != "none":
            count, models = (int(x) for x in args.tenants.split("x"))
            result["tenants"] = {
                "sqlite": tenants(
                    f"sqlite:///{work}/tenants/registry.db", work / "tenants", count, models
                )
            }
            if not args.skip_postgres:
                result["tenants"]["postgresql"] = postgres_tenants(work, count, models)
    finally:
        if redis is not None:
            redis[0].terminate()
        shutil.rmtree(work, ignore_errors=True)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_result(result, args.out)


def growth(scales: dict[str, Any]) -> dict[str, Any]:
    """How the split layout's wall times grow between the scales, and one file vs split."""
    split = sorted((k for k in scales if k.endswith("_split")), key=lambda k: int(k.split("_")[0]))
    out: dict[str, Any] = {}
    if len(split) >= 2:
        small, big = scales[split[0]]["featurestore"], scales[split[-1]]["featurestore"]
        out[f"{split[-1]}_over_{split[0]}"] = {
            step: round(big[step]["wall_s"] / small[step]["wall_s"], 2)
            for step in small
            if "wall_s" in small[step] and small[step]["wall_s"]
        }
    for key in scales:
        if key.endswith("_one-file"):
            base = key.replace("_one-file", "_split")
            if base in scales:
                one, many = scales[key]["featurestore"], scales[base]["featurestore"]
                out[f"{key}_over_split"] = {
                    step: round(one[step]["wall_s"] / many[step]["wall_s"], 2)
                    for step in one
                    if "wall_s" in one[step] and many[step]["wall_s"]
                }
    return out


def postgres_tenants(work: Path, count: int, models: int) -> dict[str, Any] | str:
    sys.path.insert(0, str(ROOT.parent))
    try:
        from tests.postgres import PostgresUnavailable, start_postgres
    except ImportError as exc:
        return f"skipped: {exc}"
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        return f"skipped: {exc}"
    try:
        url = server.create_database("tenants")
        return tenants(url, work / "pg_tenants", count, models)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
