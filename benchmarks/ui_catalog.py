"""The web UI's catalog on a big registry, side by side with Feast 0.67's UI server.

One generated repo (benchmarks/_registry_repo.py): V views of 10 features each, on their
own sources, and M models; Feast gets the same views and one feature service per model.
Each UI runs in its own process as a user starts it (``featurestore ui``, ``feast ui``);
requests go over one keep-alive connection, the same requests in alternated rounds:

* featurestore: the catalog page (HTML, first 50 of every view, feature, source and model),
  a search for one view by name (HTML), search as you type (the JSON the page's script
  fetches) for a name and for a term matching thousands, a tag filter's 20th page; and the
  first page after start (the registry read and the catalog's index built once).
* Feast: its REST API that its React UI calls: the feature views list (50 a page) and its
  search (for the same name and the same broad term, 50 a page). Feast's pages are JSON that
  the browser renders; featurestore's HTML pages are rendered on the server.
* the HTTP floor: a bare Starlette handler returning the bytes of featurestore's search
  page, so the ratio shows what search and rendering cost above serving bytes.

    python benchmarks/ui_catalog.py                  # 1,000 and 10,000 views; Feast at 1,000
    python benchmarks/ui_catalog.py --scales 200 --rounds 2 --calls 3   # a quick try

Feast's UI server needs grpcio: ``pip install -e '.[bench]'`` installs it.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

from _interleaved import log, machine, percentiles, write_result
from _registry_repo import write_feast_repo, write_repo

from featurestore.devservices import free_port

ROOT = Path(__file__).resolve().parent
FEATURESTORE = [sys.executable, "-m", "featurestore.cli"]
FLOOR_APP = """
import sys
from pathlib import Path
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
body = Path(sys.argv[1]).read_bytes()
async def page(request):
    return Response(body, media_type="text/html; charset=utf-8")
app = Starlette(routes=[Route("/{path:path}", page)])
import uvicorn
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def wait_for(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server for {path} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered {path} on port {port} within {timeout} s")


class Client:
    """One keep-alive connection; every answer must be 200 (a benchmark of errors is none)."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = headers or {}

    def get(self, path: str) -> tuple[float, bytes]:
        t0 = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        answer = self.conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"GET {path} answered {answer.status}: {body[:200]!r}")
        return time.perf_counter() - t0, body


def featurestore_ui(repo: Path) -> tuple[subprocess.Popen[bytes], int, dict[str, str], float]:
    """``featurestore ui`` on the repo, logged in with a new operator key: (process, port,
    cookie header, seconds from start to the first catalog page)."""
    key = subprocess.run(
        [*FEATURESTORE, "credentials", "create", "-r", str(repo), "--operator"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*FEATURESTORE, "ui", "-r", str(repo), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(port, "/healthz", proc, 120)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    form = urllib.parse.urlencode({"key": key, "next": "/ui/"})
    conn.request("POST", "/ui/login", form, {"content-type": "application/x-www-form-urlencoded"})
    answer = conn.getresponse()
    answer.read()
    cookie = answer.getheader("set-cookie", "").split(";")[0]
    if answer.status != 303 or not cookie:
        raise RuntimeError(f"login answered {answer.status}")
    headers = {"cookie": cookie}
    Client(port, headers).get("/ui/")
    return proc, port, headers, time.perf_counter() - t0


def feast_ui(repo: Path, timeout: float) -> tuple[subprocess.Popen[bytes], int, float]:
    port = free_port()
    feast = str(Path(sys.executable).parent / "feast")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [feast, "-c", str(repo), "ui", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(port, "/health", proc, timeout)
    Client(port).get("/api/v1/feature_views?project=scale&page=1&limit=50")
    return proc, port, time.perf_counter() - t0


def timed(
    client: Client, cases: dict[str, str], rounds: int, calls: int, budget: float = 20.0
) -> dict[str, Any]:
    """``calls`` requests per case and round, fewer once a case's round took ``budget``
    seconds (Feast's search of a big registry takes seconds a request)."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    sizes: dict[str, int] = {}
    for r in range(rounds):
        order = list(cases.items())
        for name, path in order if r % 2 == 0 else reversed(order):
            spent = 0.0
            for _ in range(calls):
                seconds, body = client.get(path)
                samples[name].append(seconds)
                sizes[name] = len(body)
                spent += seconds
                if spent > budget:
                    break
    return {n: {**percentiles(s), "bytes": sizes[n], "path": cases[n]} for n, s in samples.items()}


def apply(cmd: list[str], cwd: Path, timeout: float) -> float | None:
    t0 = time.perf_counter()
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return round(time.perf_counter() - t0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="1000,10000", help="views per repo, comma-separated")
    parser.add_argument("--models-per-view", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=10, help="requests per case and round")
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument(
        "--feast-max-views",
        type=int,
        default=1000,
        help="Feast only up to this scale (at 10,000 views `feast apply` did not end in 20 min)",
    )
    parser.add_argument("--feast-timeout", type=float, default=1200)
    parser.add_argument("--out", default=str(ROOT / "results" / "ui_catalog.json"))
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": machine(), "scales": {}}
    work = Path(tempfile.mkdtemp(prefix="ui-catalog-"))
    for views in (int(v) for v in args.scales.split(",")):
        models = max(1, int(views * args.models_per_view))
        scale = featurestore_side(work / f"fs-{views}", views, models, args)
        if not args.skip_feast and views <= args.feast_max_views:
            scale["feast"] = feast_side(work / f"feast-{views}", views, models, args)
        scale["ratios"] = ratios(scale)
        result["scales"][f"{views} views, {models} models"] = scale
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_result(result, args.out)


def featurestore_side(
    root: Path, views: int, models: int, args: argparse.Namespace
) -> dict[str, Any]:
    repo = write_repo(root, views=views, models=models)
    log(f"featurestore apply: {views} views, {models} models")
    out: dict[str, Any] = {"load_average_at_start": os.getloadavg()[0]}
    out["featurestore_apply_s"] = apply([*FEATURESTORE, "apply", "-r", str(repo)], repo, 1200)
    proc, port, headers, first = featurestore_ui(repo)
    out["featurestore_start_to_first_page_s"] = round(first, 2)
    last = views - 1
    cases = {
        "catalog page": "/ui/",
        "search one view (page)": f"/ui/?q=view_{last}",
        "search as you type, one view (JSON)": f"/ui/api/catalog?q=view_{last}",
        "search as you type, broad: 'f3' (JSON)": "/ui/api/catalog?q=f3",
        "tag filter, 20th page": "/ui/?tag=team%3Dt3&offset=950",
    }
    try:
        log("featurestore requests")
        client = Client(port, headers)
        out["featurestore"] = timed(client, cases, args.rounds, args.calls)
        _, page = client.get(cases["search one view (page)"])
    finally:
        proc.terminate()
        proc.wait(30)
    (root / "page.html").write_bytes(page)
    floor_port = free_port()
    floor = subprocess.Popen(
        [sys.executable, "-c", FLOOR_APP, str(root / "page.html"), str(floor_port)]
    )
    try:
        wait_for(floor_port, "/", floor, 60)
        log("HTTP floor requests")
        floor_cases = {"same bytes, bare Starlette": cases["search one view (page)"]}
        out["floor"] = timed(Client(floor_port), floor_cases, args.rounds, args.calls)
    finally:
        floor.terminate()
        floor.wait(30)
    return out


def feast_side(root: Path, views: int, models: int, args: argparse.Namespace) -> dict[str, Any]:
    repo = write_feast_repo(root, views=views, services=models)
    (repo / "data").mkdir(exist_ok=True)
    last = views - 1
    log(f"feast apply: {views} views, {models} services (timeout {args.feast_timeout} s)")
    feast = str(Path(sys.executable).parent / "feast")
    took = apply([feast, "-c", str(repo), "apply"], repo, args.feast_timeout)
    out: dict[str, Any] = {"apply_s": took}
    if took is None:
        out["note"] = f"feast apply did not finish within {args.feast_timeout} s"
        return out
    proc, port, first = feast_ui(repo, args.feast_timeout)
    out["start_to_first_page_s"] = round(first, 2)
    page = "projects=scale&page=1&limit=50"
    cases = {
        "feature views list, 50 a page (JSON)": f"/api/v1/feature_views?{page.replace('s=', '=')}",
        "search one view (JSON)": f"/api/v1/search?query=view_{last}&{page}",
        "search, broad: 'f3' (JSON)": f"/api/v1/search?query=f3&{page}",
    }
    try:
        log("Feast requests")
        out.update(timed(Client(port), cases, args.rounds, args.calls))
    finally:
        proc.terminate()
        proc.wait(30)
    return out


def ratios(result: dict[str, Any]) -> dict[str, float]:
    fs, floor = result["featurestore"], result["floor"]["same bytes, bare Starlette"]
    out = {"search page / HTTP floor": fs["search one view (page)"]["p50_ms"] / floor["p50_ms"]}
    feast = result.get("feast") or {}
    pairs = (
        ("catalog page / Feast views list", "catalog page", "feature views list, 50 a page (JSON)"),
        (
            "search one view / Feast",
            "search as you type, one view (JSON)",
            "search one view (JSON)",
        ),
        (
            "broad search / Feast",
            "search as you type, broad: 'f3' (JSON)",
            "search, broad: 'f3' (JSON)",
        ),
    )
    for label, ours, theirs in pairs:
        if theirs in feast:
            out[label] = fs[ours]["p50_ms"] / feast[theirs]["p50_ms"]
    if "start_to_first_page_s" in feast:
        out["start to first page / Feast"] = (
            result["featurestore_start_to_first_page_s"] / feast["start_to_first_page_s"]
        )
    return {k: round(v, 4) for k, v in out.items()}


if __name__ == "__main__":
    main()
