"""Limits per model and project (``serving.limits``): the limiter on an injected clock,
the config's errors, and ``featurestore serve`` holding a flooding model apart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from featurestore import FeatureStore
from featurestore.config import load_config
from featurestore.errors import RateLimited, RepoConfigError
from featurestore.serving.limits import Limit, Limiter, ServingLimits, entity_rows
from tests.helpers import ONLINE_REPO, replace_once, write_repo
from tests.test_online_store import user_stats
from tests.test_serving import Server, start_server, stop_server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **limits: Limit) -> Limiter:
    models = {k: v for k, v in limits.items() if k not in ("default", "project")}
    return Limiter(
        ServingLimits(
            default=limits.get("default", Limit()),
            models=models,
            project=limits.get("project", Limit()),
        ),
        "shop",
        clock,
    )


def refused(call: object, *args: int) -> RateLimited:
    with pytest.raises(RateLimited) as info:
        call(*args)  # type: ignore[operator]
    return info.value


def test_the_bucket_lets_a_burst_through_then_refills_at_its_rate() -> None:
    clock = Clock()
    gate = limiter(clock, a=Limit(rows_per_second=10, burst_rows=20)).gate("a")
    gate.charge(20)  # full at start: the whole burst at once
    exc = refused(gate.charge, 1)
    assert (exc.scope, exc.limit, exc.retry_after) == ("model", "rows_per_second", 1)
    clock.now += 0.5  # 5 rows back
    gate.charge(5)
    refused(gate.charge, 1)
    clock.now += 3600  # refills up to the burst, never past it
    gate.charge(20)
    refused(gate.charge, 1)


def test_retry_after_is_the_refill_time_in_whole_seconds() -> None:
    clock = Clock()
    gate = limiter(clock, a=Limit(rows_per_second=2, burst_rows=10)).gate("a")
    gate.charge(10)
    exc = refused(gate.charge, 7)  # 7 rows at 2 rows/s: 3.5 s
    assert exc.retry_after == 4
    assert str(exc) == (
        "model 'a': this request's 7 entity rows are past its limit of 2 entity rows per "
        "second, bursts of 10 (per server worker); retry after 4 s or ask for a higher "
        "limit in featurestore.yaml serving.limits."
    )
    clock.now += 3.4
    assert refused(gate.charge, 7).retry_after == 1  # never 0: that would be a retry storm
    clock.now += 0.1
    gate.charge(7)  # a refused request spent nothing


def test_a_spent_bucket_refuses_on_entering_and_takes_no_slot() -> None:
    clock = Clock()
    limits = limiter(
        clock,
        default=Limit(concurrent=5),
        a=Limit(concurrent=5, rows_per_second=10),
        project=Limit(concurrent=10, rows_per_second=100),
    )
    a, b = limits.gate("a"), limits.gate("b")
    a.charge(10)
    exc = refused(a.enter)  # any request costs a row at least: its body need not be read
    assert (exc.scope, exc.limit, exc.retry_after) == ("model", "rows_per_second", 1)
    assert str(exc) == (
        "model 'a': its limit (10 entity rows per second, bursts of 10) is spent (per server "
        "worker); retry after 1 s or ask for a higher limit in featurestore.yaml serving.limits."
    )
    assert (a.in_flight, limits.project.in_flight) == (0, 0)  # type: ignore[union-attr]
    b.charge(90)
    assert refused(b.enter).scope == "project"
    assert (b.in_flight, limits.project.in_flight) == (0, 0)  # type: ignore[union-attr]
    clock.now += 0.1  # a row back in each
    with a, b:
        assert limits.project.in_flight == 2  # type: ignore[union-attr]


def test_a_request_larger_than_the_burst_is_refused_without_a_retry_time() -> None:
    clock = Clock()
    gate = limiter(clock, a=Limit(rows_per_second=100)).gate("a")  # burst: one second's
    exc = refused(gate.charge, 101)
    assert (exc.limit, exc.retry_after) == ("burst_rows", None)
    assert "asks for 101 entity rows, more than its limit lets through at once" in str(exc)
    assert "split it into requests of at most 100 rows" in str(exc)
    gate.charge(100)  # and it spent nothing


def test_the_project_bucket_is_shared_and_charged_with_the_model_or_not_at_all() -> None:
    clock = Clock()
    limits = limiter(
        clock,
        a=Limit(rows_per_second=50),
        project=Limit(rows_per_second=60),
    )
    a, b = limits.gate("a"), limits.gate("b")  # b: the default, no limit of its own
    b.charge(30)
    exc = refused(a.charge, 40)  # a's own bucket has 50, the project's 30
    assert (exc.model, exc.scope, exc.limit) == ("a", "project", "rows_per_second")
    assert str(exc).startswith("project 'shop': this request's 40 entity rows")
    a.charge(30)  # a's bucket was not charged for the refused 40
    assert refused(a.charge, 21).scope == "model"  # 20 left in a's bucket
    assert refused(b.charge, 1).scope == "project"


def test_concurrent_requests_are_counted_per_model_and_for_the_project() -> None:
    clock = Clock()
    limits = limiter(
        clock,
        default=Limit(concurrent=5),
        a=Limit(concurrent=2),
        project=Limit(concurrent=4),
    )
    a, b = limits.gate("a"), limits.gate("b")
    a.enter()
    a.enter()
    exc = refused(a.enter)
    assert (exc.scope, exc.limit, exc.retry_after) == ("model", "concurrent", 1)
    assert str(exc).startswith("model 'a': 2 requests in flight, its limit of concurrent")
    b.enter()
    b.enter()
    exc = refused(b.enter)  # b's own limit is 5; the project's 4 are taken
    assert (exc.model, exc.scope) == ("b", "project")
    a.leave()
    b.enter()
    assert (a.in_flight, b.in_flight, limits.project.in_flight) == (1, 3, 4)  # type: ignore[union-attr]


def test_a_slot_is_released_when_the_request_raises_or_is_cancelled() -> None:
    gate = limiter(Clock(), a=Limit(concurrent=1)).gate("a")

    async def request(started: asyncio.Event) -> None:
        with gate:
            started.set()
            await asyncio.sleep(60)

    async def scenario() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(request(started))
        await started.wait()
        assert refused(gate.enter).limit == "concurrent"
        task.cancel()  # the client went away: the server cancels the request
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert gate.in_flight == 0
    with pytest.raises(KeyError), gate:
        raise KeyError("a lookup error")
    assert gate.in_flight == 0
    with gate:
        assert gate.in_flight == 1


def test_entity_rows_counts_rows_or_columns() -> None:
    assert entity_rows([{"user_id": 1}, {"user_id": 2}]) == 2
    assert entity_rows({"user_id": [1, 2, 3], "merchant_id": ["m", "m", "m"]}) == 3
    assert entity_rows({"user_id": 1}) == 0  # refused by the lookup, at no cost here
    assert entity_rows("x") == 0


# -- featurestore.yaml ---------------------------------------------------------------


def config_with(tmp_path: Path, serving: str) -> Path:
    return write_repo(
        tmp_path / "repo", {"featurestore.yaml": f"project: demo\nserving:\n{serving}"}
    )


def test_limits_are_off_unless_configured_and_models_merge_over_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = write_repo(tmp_path / "plain", {})
    assert load_config(plain).serving_limits.off
    monkeypatch.setenv("FS_TEST_FRAUD_RATE", "2000")
    repo = config_with(
        tmp_path,
        """
  limits:
    default: {concurrent: 64, rows_per_second: 50000, burst_rows: 100000}
    models:
      fraud_model: {concurrent: 8, rows_per_second: "${FS_TEST_FRAUD_RATE}"}
      batch_model: {concurrent: null}
    project: {concurrent: 256, rows_per_second: 200000}
""",
    )
    limits = load_config(repo).serving_limits
    assert limits.default == Limit(64, 50000, 100000)
    # Its own rate, so its own burst (one second's), not the default's.
    assert limits.for_model("fraud_model") == Limit(8, 2000.0, None)
    assert limits.for_model("fraud_model").burst == 2000
    assert limits.for_model("batch_model") == Limit(None, 50000, 100000)
    assert limits.for_model("other") == limits.default
    assert limits.project == Limit(256, 200000, None)


@pytest.mark.parametrize(
    ("serving", "message"),
    [
        (
            "  limts: {}\n",
            "unknown setting 'serving.limts'. Did you mean 'limits'?",
        ),
        (
            "  limits:\n    defaults: {concurrent: 1}\n",
            "unknown setting 'serving.limits.defaults'. Did you mean 'default'?",
        ),
        (
            "  limits:\n    models:\n      fraud_model: {concurent: 1}\n",
            "unknown setting 'serving.limits.models.fraud_model.concurent'. "
            "Did you mean 'concurrent'?",
        ),
        (
            "  limits:\n    default: {concurrent: 0}\n",
            "'serving.limits.default.concurrent' must be a whole number of requests above 0 "
            "(got 0, a int); write null to turn it off.",
        ),
        (
            "  limits:\n    project: {rows_per_second: fast}\n",
            "'serving.limits.project.rows_per_second' must be a number of entity rows above 0 "
            "(got 'fast', a str)",
        ),
        (
            "  limits:\n    default: {burst_rows: 1.5, rows_per_second: 1}\n",
            "'serving.limits.default.burst_rows' must be a whole number of entity rows",
        ),
        (
            "  limits:\n    default: {concurrent: true}\n",
            "(got True, a bool)",
        ),
        (
            "  limits:\n    default: {burst_rows: 10}\n",
            "'serving.limits.default.burst_rows' needs a rows_per_second to refill it",
        ),
        ("  limits: [1]\n", "'serving.limits' must be a mapping of default, models and project"),
        ("  limits:\n    models: [fraud_model]\n", "'serving.limits.models' must map model"),
        ("  limits:\n    default: 64\n", "'serving.limits.default' must be a mapping, e.g."),
    ],
)
def test_bad_limits_are_named(tmp_path: Path, serving: str, message: str) -> None:
    repo = config_with(tmp_path, serving)
    with pytest.raises(RepoConfigError) as info:
        load_config(repo)
    assert message in str(info.value)


# -- featurestore serve --------------------------------------------------------------

FLOOD = str(Path(__file__).with_name("flood.py"))
OTHER_MODEL = (
    'other_model = Model(name="other_model", feature_services=[fraud], owner="x", '
    'purpose="other")\nfraud_model = Model('
)


def limited_repo(path: Path, redis_url: str, project: str, limits: str) -> Path:
    """ONLINE_REPO with a second model (other_model) and ``limits`` as serving.limits."""
    files = replace_once(ONLINE_REPO, "defs.py", "fraud_model = Model(", OTHER_MODEL)
    config = (
        f"project: {project}\nregistry: data/registry.db\nonline_store:\n"
        f"  redis_url: {redis_url}\nserving:\n  limits:\n{limits}"
    )
    repo = write_repo(path, {**files, "featurestore.yaml": config})
    with FeatureStore(repo) as store:
        store.apply()
        now = datetime.now(UTC)
        ids = list(range(200))
        store.write_online("user_stats", user_stats(ids, [now] * len(ids), [1.0] * len(ids)))
    return repo


def metric_samples(server: Server) -> dict[str, float]:
    text = server.get("/metrics").text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def rows(n: int) -> list[dict[str, object]]:
    return [{"user_id": i % 200, "merchant_id": "m1"} for i in range(n)]


def key_of(repo: Path, model: str) -> dict[str, str]:
    with FeatureStore(repo) as store:
        _credential, key = store.create_credential(model, description="tests")
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.services
def test_serve_answers_429_with_retry_after_and_releases_slots(
    tmp_path: Path, services: Any
) -> None:
    repo = limited_repo(
        tmp_path / "repo",
        services.redis_url,
        "limited",
        "    models:\n      fraud_model: {concurrent: 1, rows_per_second: 2, burst_rows: 20}\n"
        "    project: {concurrent: 100}\n",
    )
    other = key_of(repo, "other_model")
    server = start_server(repo)
    fraud = {"Authorization": f"Bearer {server.key}"}
    try:
        assert server.post({"entities": rows(20)}).status_code == 200  # the whole burst
        spent = server.post({"entities": rows(1)})  # refused before its body is read
        assert spent.status_code == 429
        assert spent.headers["retry-after"] == "1"
        assert spent.json()["error"] == "RateLimited"
        assert spent.json()["detail"] == (
            "model 'fraud_model': its limit (2 entity rows per second, bursts of 20) is spent "
            "(per server worker); retry after 1 s or ask for a higher limit in "
            "featurestore.yaml serving.limits."
        )
        time.sleep(1.1)  # 2 rows back: a request of 5 is refused once its body is read
        limited = server.post({"entities": rows(5)})
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "2"  # 3 rows at 2 rows/s
        assert "this request's 5 entity rows are past its limit of 2" in limited.json()["detail"]
        too_big = server.post({"entities": rows(21)})
        assert too_big.status_code == 429
        assert "retry-after" not in too_big.headers  # waiting would not help
        assert "split it into requests of at most 20 rows" in too_big.json()["detail"]
        # Another model is not held back by this one's limit.
        assert server.post({"entities": rows(50)}, headers=other).status_code == 200

        time.sleep(1.1)  # the bucket refills (2 rows)
        # Requests that fail release their slot (concurrent: 1, so the next would be 429).
        assert server.post({"entities": rows(1), "extra": 1}).status_code == 422
        assert server.post({"features": ["user_stats:nope"], "entities": rows(1)}).status_code == (
            404
        )
        assert server.post({"entities": rows(1)}).status_code == 200

        # A request waiting for its body holds the model's one slot...
        hanging = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
        hanging.sendall(
            b"POST /v1/features HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: " + fraud["Authorization"].encode() + b"\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"entities": ['
        )
        deadline = time.monotonic() + 10
        while "in flight" not in (busy := server.post({"entities": rows(1)})).text:
            assert time.monotonic() < deadline, busy.text
            time.sleep(0.05)
        assert busy.status_code == 429
        assert "1 requests in flight, its limit of concurrent requests" in busy.json()["detail"]
        assert busy.headers["retry-after"] == "1"
        # ...until its client goes away.
        hanging.close()
        deadline = time.monotonic() + 10
        while (back := server.post({"entities": rows(1)})).status_code != 200:
            assert time.monotonic() < deadline, back.text
            time.sleep(0.05)

        samples = metric_samples(server)
        rejected = 'featurestore_rejected_total{{limit="{}",model="fraud_model",scope="model"}}'
        assert samples[rejected.format("rows_per_second")] >= 1
        assert samples[rejected.format("burst_rows")] == 1
        assert samples[rejected.format("concurrent")] >= 1
        assert samples['featurestore_request_errors_total{error="RateLimited",status="429"}'] >= 3
    finally:
        stop_server(server)


def timed(servers: list[Server], body: bytes, headers: dict[str, str], n: int) -> list[list[float]]:
    """Seconds of ``n`` lookups on each server, one server after the other (a connection
    each), so that the machine's hiccups hit every server alike; every one must be 200."""
    times: list[list[float]] = [[] for _ in servers]
    headers = {**headers, "Content-Type": "application/json"}
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(httpx.Client(timeout=10, headers=headers)) for _ in servers]
        urls = [f"{server.url}/v1/features" for server in servers]
        for _ in range(n):
            for client, url, seconds in zip(clients, urls, times, strict=True):
                start = time.perf_counter()
                response = client.post(url, content=body)
                seconds.append(time.perf_counter() - start)
                assert response.status_code == 200, response.text  # never a 429 for B
    return times


def p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100)[98]


@pytest.mark.services
def test_a_model_flooding_at_10x_its_limit_does_not_slow_another(
    tmp_path: Path, services: Any
) -> None:
    # A (fraud_model) may look up 800 rows/s; it asks 8,000 (8 requests/s of 1,000 rows,
    # each about 15 ms of the server's CPU), all the time, on one server. B (other_model)
    # asks 1 row at a time, one request after another, alternately on that server and on
    # a twin of it that A does not use, so that the machine's hiccups hit both alike. B's
    # p99 under A's flood must stay within 1.5x of its p99 alone (2,000 requests each;
    # one more try on a noisy machine). Unlimited, A's requests would land on over 1% of
    # B's (each B request waits out at most one), and B's p99 would be A's request time.
    a_rows, a_limit = 1000, 800
    repo = limited_repo(
        tmp_path / "repo",
        services.redis_url,
        "noisy",
        "    default: {concurrent: 64}\n"
        "    models:\n"
        f"      fraud_model: {{concurrent: 4, rows_per_second: {a_limit}, burst_rows: {a_rows}}}\n"
        "    project: {concurrent: 256}\n",
    )
    b_headers = key_of(repo, "other_model")
    flooded_server, quiet_server = start_server(repo), start_server(repo, model=None)
    b_body = orjson.dumps({"entities": rows(1)})
    a_body = orjson.dumps({"entities": rows(a_rows)}).decode()
    url = f"{flooded_server.url}/v1/features"
    flood = subprocess.Popen(
        [sys.executable, FLOOD, url, flooded_server.key, a_body, str(10 * a_limit / a_rows), "4"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert flood.stdout is not None
        assert flood.stdout.readline().strip() == "ready"  # A's first burst is spent
        servers = [quiet_server, flooded_server]
        timed(servers, b_body, b_headers, 300)  # warm up
        for attempt in range(2):
            alone, flooded = timed(servers, b_body, b_headers, 2000)
            print(
                f"attempt {attempt}: B p99 alone {p99(alone) * 1e3:.2f} ms, "
                f"under A's flood {p99(flooded) * 1e3:.2f} ms"
            )
            if p99(flooded) <= 1.5 * p99(alone):
                break
        assert p99(flooded) <= 1.5 * p99(alone)
    finally:
        out, _ = flood.communicate("", timeout=60)
        stop_server(flooded_server)
        stop_server(quiet_server)
    summary = json.loads(out)
    print(f"A: {summary}")
    statuses, seconds = summary["statuses"], summary["seconds"]
    # A flooded (at least 8x its limit, answered), and was held to its limit: its burst
    # plus its rate (one request of slack for the clock), the rest refused with Retry-After.
    assert sum(statuses.values()) * a_rows >= 8 * a_limit * seconds
    assert statuses.get("200", 0) * a_rows <= a_rows + a_limit * seconds + a_rows
    assert set(summary["retry_after"]) <= {"1", "2"}  # 1,000 rows at 800 rows/s
    assert sum(summary["retry_after"].values()) == statuses.get("429", 0) > 0
