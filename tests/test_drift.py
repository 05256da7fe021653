"""Drift: statistics on known distributions, reference profiles from a training set, the
sampled serving log, checks that publish to lookups, training/serving skew, and the
server's drift endpoints (real Redis, real Parquet, a real server process)."""

from __future__ import annotations

import itertools
import json
import math
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import redis
from redis.cluster import RedisCluster
from typer.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import app
from featurestore.drift.monitor import feature_drift, monitor_forever, run_checks
from featurestore.drift.profile import profile_column
from featurestore.drift.stats import js_distance, psi, worst
from featurestore.online.layout import served_key
from tests.helpers import write_repo
from tests.test_serving import start_server, stop_server

UTC_US = pa.timestamp("us", tz="UTC")
SPEC = {
    "psi_warn": 0.1,
    "psi_drift": 0.25,
    "js_warn": 0.1,
    "js_drift": 0.2,
    "null_rate_warn": 0.05,
    "null_rate_drift": 0.2,
    "min_samples": 100,
    "max_staleness_seconds": None,
}


def normal(n: int, mean: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, 10.0) for _ in range(n)]


def countries(n: int, seed: int, weights: dict[str, float]) -> list[str]:
    rng = random.Random(seed)
    return rng.choices(list(weights), weights=list(weights.values()), k=n)


BASE = {"DE": 0.5, "FR": 0.3, "IT": 0.2}


# -- statistics on known distributions ------------------------------------------------------


def test_identical_distributions_are_ok() -> None:
    ref = profile_column("v@v1:x", pa.array(normal(5000, 100, 1))).to_dict()
    got = feature_drift(ref, normal(2000, 100, 2), [], SPEC)
    assert got["status"] == "ok", got
    assert got["psi"] < 0.05
    cat = profile_column("v@v1:c", pa.array(countries(5000, 1, BASE))).to_dict()
    same = feature_drift(cat, countries(2000, 2, BASE), [], SPEC)
    assert same["status"] == "ok", same
    assert same["js"] < 0.05


def test_a_shifted_mean_drifts() -> None:
    ref = profile_column("v@v1:x", pa.array(normal(5000, 100, 1))).to_dict()
    small = feature_drift(ref, normal(2000, 103, 2), [], SPEC)  # 0.3 sigma
    large = feature_drift(ref, normal(2000, 120, 2), [], SPEC)  # 2 sigma
    assert small["psi"] < large["psi"]
    assert small["status"] in ("ok", "warn")
    assert large["status"] == "drift"
    assert large["psi"] > 1.0


def test_a_check_keeps_the_served_shares_beside_the_references() -> None:
    """What a histogram draws: served shares per reference bin or category, summing to 1."""
    ref = profile_column("v@v1:x", pa.array(normal(5000, 100, 1))).to_dict()
    got = feature_drift(ref, normal(2000, 120, 2), [], SPEC)
    assert len(got["served_fractions"]) == len(ref["fractions"])
    assert sum(got["served_fractions"]) == pytest.approx(1.0, abs=1e-4)
    assert got["served_fractions"][-1] > ref["fractions"][-1] * 3  # the mass moved up
    cat = profile_column("v@v1:c", pa.array(countries(5000, 1, BASE))).to_dict()
    shares = feature_drift(cat, countries(2000, 2, {**BASE, "XX": 0.6}), [], SPEC)
    assert set(shares["served_categories"]) == {"DE", "FR", "IT", "__other__"}
    assert shares["served_categories"]["__other__"] == pytest.approx(0.6 / 1.6, abs=0.03)


def test_a_new_category_is_flagged() -> None:
    ref = profile_column("v@v1:c", pa.array(countries(5000, 1, BASE))).to_dict()
    got = feature_drift(ref, countries(2000, 2, {**BASE, "XX": 0.6}), [], SPEC)
    assert got["status"] == "drift"
    assert got["unseen_share"] > 0.3
    assert js_distance({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    assert js_distance({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0


def test_nulls_appearing_are_flagged() -> None:
    ref = profile_column("v@v1:x", pa.array(normal(5000, 100, 1))).to_dict()
    values = normal(2000, 100, 2)
    with_nulls = [None if i % 3 == 0 else v for i, v in enumerate(values)]
    got = feature_drift(ref, with_nulls, [], SPEC)
    assert got["null_rate"]["served"] == pytest.approx(1 / 3, abs=0.01)
    assert got["status"] == "drift"
    assert got["psi"] < 0.1  # the values themselves did not move


def test_too_few_samples_and_no_reference_are_unknown() -> None:
    ref = profile_column("v@v1:x", pa.array(normal(5000, 100, 1))).to_dict()
    assert feature_drift(ref, normal(99, 100, 2), [], SPEC)["status"] == "unknown"
    assert feature_drift(None, normal(500, 100, 2), [], SPEC)["status"] == "unknown"
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    with pytest.raises(ValueError, match="bins"):
        psi([1.0], [0.5, 0.5])


def test_a_reference_without_values_is_no_reference_not_a_crash() -> None:
    """A training set built before a (streamed) view had history profiles it all null:
    there is nothing to compare with, which is neither drift nor a ValueError."""
    for column in (pa.array([None] * 50, pa.float64()), pa.array([None] * 50, pa.string())):
        ref = profile_column("v@v1:x", column).to_dict()
        served = normal(500, 100, 2) if column.type == pa.float64() else countries(500, 2, BASE)
        got = feature_drift(ref, served, [], SPEC)
        assert got["status"] == "no_reference", got
        assert "rebuild the training set" in got["reason"]
        assert "50 of 50 rows null" in got["reason"]
    # It ranks with unknown: a model never warns or drifts because of it.
    assert worst(["ok", "no_reference"]) == "ok"


def test_non_finite_floats_are_counted_apart_from_the_bins() -> None:
    """+inf, -inf and NaN in a training set: counted as non-finite, the bins, mean, min and
    max are of the finite values, and every statistic stays finite (JSON-safe)."""
    values = [*normal(1000, 100, 1), math.inf, -math.inf, math.nan, None]
    profile = profile_column("v@v1:x", pa.array(values, pa.float64()))
    assert (profile.count, profile.nulls, profile.non_finite) == (1004, 1, 3)
    numbers = [profile.mean, profile.min, profile.max, *profile.edges, *profile.fractions]
    assert all(math.isfinite(v) for v in numbers), profile
    assert profile.mean == pytest.approx(100, abs=1.5)
    assert sum(profile.fractions) == pytest.approx(1.0)
    assert len(profile.fractions) == len(profile.edges) + 1
    only = profile_column("v@v1:x", pa.array([math.inf, math.nan, None], pa.float64()))
    assert (only.non_finite, only.edges, only.mean) == (2, [], None)
    assert feature_drift(only.to_dict(), normal(500, 100, 2), [], SPEC)["status"] == (
        "no_reference"
    )
    # Served non-finite values are not binned either: a share of them appearing is measured.
    ref = profile.to_dict()
    same = feature_drift(ref, normal(2000, 100, 2), [], SPEC)
    assert same["status"] == "ok", same
    flooded = [math.inf if i % 4 == 0 else v for i, v in enumerate(normal(2000, 100, 2))]
    got = feature_drift(ref, flooded, [], SPEC)
    assert got["non_finite_rate"]["served"] == pytest.approx(0.25)
    assert got["status"] == "drift"
    assert math.isfinite(got["served_mean"])
    assert got["psi"] < 0.1  # the finite values did not move


def test_staleness_is_measured_against_the_limit() -> None:
    ref = profile_column("v@v1:x", pa.array(normal(500, 100, 1))).to_dict()
    spec = {**SPEC, "max_staleness_seconds": 60}
    fresh = feature_drift(ref, normal(200, 100, 2), [5.0] * 200, spec)
    stale = feature_drift(ref, normal(200, 100, 2), [600.0] * 200, spec)
    assert (fresh["status"], stale["status"]) == ("ok", "drift")
    assert stale["age_seconds"]["p50"] == 600.0


# -- end to end on Redis --------------------------------------------------------------------

DEFS = """
from datetime import timedelta

from featurestore import (
    DriftMonitor, Entity, FeatureService, FeatureView, Field, Float64, Int64, Model,
    ParquetSource, String,
)

user = Entity(name="user", join_key="user_id", dtype=Int64)
src = ParquetSource(name="src", path="data/src")
stats = FeatureView(
    name="stats",
    entities=[user],
    source=src,
    schema=[
        Field(name="amount", dtype=Float64),
        Field(name="country", dtype=String),
        Field(name="score", dtype=Float64),
    ],
    ttl=timedelta(days=30),
)
svc = FeatureService(name="svc", features=[stats])
scorer = Model(name="scorer", feature_services=[svc], purpose="fraud", owner="risk")
other = Model(name="other", feature_services=[svc], purpose="fraud", owner="risk")
watch = DriftMonitor(
    name="watch", model=scorer, sample_rate=1.0, min_samples=100, window=timedelta(hours=1)
)
"""
USERS = 300
_n = itertools.count()


def rows(at: datetime, amount_mean: float, weights: dict[str, float], nulls: int, seed: int):
    scores = normal(USERS, 0, seed + 2)
    return pa.table(
        {
            "user_id": pa.array(range(USERS), pa.int64()),
            "event_timestamp": pa.array([at] * USERS, UTC_US),
            "amount": normal(USERS, amount_mean, seed),
            "country": countries(USERS, seed + 1, weights),
            "score": [None if nulls and i % nulls == 0 else s for i, s in enumerate(scores)],
        }
    )


@pytest.fixture
def monitored(tmp_path: Path, services: Any) -> Iterator[FeatureStore]:
    """Trained on 300 users (amount ~ N(100, 10)); the same values served online."""
    yield from monitored_store(tmp_path, services)


@pytest.fixture(params=["standalone", "cluster"])
def monitored_anywhere(
    request: pytest.FixtureRequest, tmp_path: Path, services: Any
) -> Iterator[FeatureStore]:
    """``monitored`` on one Redis, and on a Redis Cluster."""
    cluster = request.getfixturevalue("redis_cluster") if request.param == "cluster" else None
    yield from monitored_store(tmp_path, services, cluster_url=cluster and cluster.url)


def monitored_store(
    tmp_path: Path,
    services: Any,
    *,
    trained_score_nulls: int = 0,
    cluster_url: str | None = None,
) -> Iterator[FeatureStore]:
    online = f"  redis_url: {services.redis_url}\n"
    if cluster_url:
        online = f"  redis_url: {cluster_url}\n  cluster: true\n"
    config = f"project: drift{next(_n)}\nregistry: data/registry.db\nonline_store:\n{online}"
    repo = write_repo(tmp_path / "repo", {"featurestore.yaml": config, "defs.py": DEFS})
    now = datetime.now(UTC)
    with FeatureStore(repo) as store:
        store.apply()
        trained = rows(now - timedelta(hours=3), 100, BASE, trained_score_nulls, 1)
        store.offline_store().write(store.snapshot().feature_view("stats"), 1, trained)
        store.write_online("stats", rows(now - timedelta(hours=3), 100, BASE, 0, 1))
        spine = pa.table(
            {
                "user_id": pa.array(range(USERS), pa.int64()),
                "event_timestamp": pa.array([now - timedelta(hours=2)] * USERS, UTC_US),
            }
        )
        store.get_training_data(spine, model="scorer")
        yield store


def serve_lookups(client: Any, n: int = 6) -> None:
    for i in range(n):
        client.get_online_features(
            [{"user_id": u} for u in range(i * 50, i * 50 + 50)], model="scorer"
        )
    client.serving_log.flush()


@pytest.mark.services
def test_training_sets_save_reference_profiles(monitored: FeatureStore) -> None:
    training_set, profiles = monitored.registry.drift.reference(monitored.project, "scorer")
    assert training_set == monitored.registry.training_sets(monitored.project)[0].id
    assert set(profiles) == {"stats@v1:amount", "stats@v1:country", "stats@v1:score"}
    amount = profiles["stats@v1:amount"]
    assert (amount["kind"], amount["count"], amount["nulls"]) == ("numeric", USERS, 0)
    assert amount["mean"] == pytest.approx(100, abs=2)
    assert sum(amount["fractions"]) == pytest.approx(1.0)
    assert set(profiles["stats@v1:country"]["categories"]) == set(BASE)
    assert monitored.registry.drift.reference(monitored.project, "other") is None


@pytest.mark.services
def test_served_drift_reaches_lookups_with_its_history_and_skew(
    monitored_anywhere: FeatureStore,
) -> None:
    monitored = monitored_anywhere
    client = monitored.online_client()
    client.drift_refresh_seconds = 0.0  # read the status on every lookup
    first = client.get_online_features([{"user_id": 1}], model="scorer")
    assert first.drift["status"] == "unknown"  # never checked
    serve_lookups(client)
    [detail] = run_checks(monitored)
    assert detail["status"] == "ok", detail
    assert detail["lookups"] == 7
    assert detail["features"]["stats:amount"]["samples"] == 301
    assert detail["skew"]["stats:amount"] == {"checked": 200, "mismatches": 0, "examples": []}
    ok = client.get_online_features([{"user_id": 1}], model="scorer")
    assert ok.drift == {
        "model": "scorer",
        "status": "ok",
        "features": {},
        "checked_at": detail["checked_at"],
    }
    assert json.loads(ok.to_json())["metadata"]["drift"]["status"] == "ok"

    # The world moves: online values shift (offline keeps the old ones: skew too).
    shifted = rows(datetime.now(UTC) - timedelta(minutes=5), 140, {**BASE, "XX": 1.0}, 3, 7)
    monitored.write_online("stats", shifted)
    direct = RedisCluster if monitored.config.redis_cluster else redis.Redis
    direct.from_url(monitored.config.redis_url).delete(served_key(monitored.project, "scorer"))
    serve_lookups(client)
    [detail] = run_checks(monitored)
    features = detail["features"]
    assert detail["status"] == "drift"
    assert features["stats:amount"]["status"] == "drift"
    assert features["stats:amount"]["psi"] > 1
    assert features["stats:country"]["status"] == "drift"
    assert features["stats:score"]["null_rate"]["served"] == pytest.approx(1 / 3, abs=0.02)
    assert features["stats:score"]["status"] == "drift"
    assert detail["skew"]["stats:amount"]["mismatches"] == detail["skew"]["stats:amount"]["checked"]
    seen = client.get_online_features([{"user_id": 1}], model="scorer").drift
    assert seen["status"] == "drift"
    assert seen["features"] == {
        "stats:amount": "drift",
        "stats:country": "drift",
        "stats:score": "drift",
    }
    assert client.drift_status("scorer", detail=True)["features"]["stats:amount"]["psi"] > 1
    history = monitored.registry.drift.checks(monitored.project, "scorer")
    assert [c.status for c in history] == ["drift", "ok"]
    from featurestore.lineage.queries import model_lineage

    lineage = model_lineage(
        monitored.registry,
        monitored.snapshot(),
        monitored.config.offline_store_path,
        "scorer",
        "allow",
    )
    assert lineage["drift"]["status"] == "drift"
    assert lineage["drift"]["reference_training_set"] == lineage["training_sets"][0]["id"]
    # Unmonitored models are not sampled and carry no status.
    assert client.get_online_features([{"user_id": 1}], model="other").drift is None


@pytest.mark.services
def test_a_feature_with_no_reference_values_is_reported_and_never_stops_the_monitor(
    tmp_path: Path, services: Any
) -> None:
    """'score' was all null when the training set was built (the view had no history yet)
    but is served with values: the check reports it as no_reference, the model is judged
    on its other features, and the monitor keeps checking."""
    built = monitored_store(tmp_path, services, trained_score_nulls=1)
    store = next(built)
    try:
        _ts, profiles = store.registry.drift.reference(store.project, "scorer")
        assert profiles["stats@v1:score"]["nulls"] == USERS
        client = store.online_client()
        serve_lookups(client)
        [detail] = next(monitor_forever(store, 0.0))  # the monitor's first round
        score = detail["features"]["stats:score"]
        assert score["status"] == "no_reference", score
        assert "rebuild the training set once the view has data" in score["reason"]
        assert "featurestore training-data --model scorer" in score["reason"]
        assert detail["no_reference"] == ["stats:score"]
        assert detail["status"] == "ok", detail  # amount and country are fine
        assert detail["features"]["stats:amount"]["status"] == "ok"
        assert client.drift_status("scorer")["no_reference"] == ["stats:score"]
        repo = str(store.config.repo_path)
        checked = CliRunner().invoke(app, ["drift", "check", "scorer", "-r", repo])
        assert checked.exit_code == 0, checked.output
        assert "scorer: ok" in checked.output
        assert "no_reference" in checked.output
        assert "rebuild the training set" in checked.output
        status = CliRunner().invoke(app, ["drift", "status", "scorer", "-r", repo, "--json"])
        got = json.loads(status.output)
        assert got["features"]["stats:score"]["status"] == "no_reference"
        client.close()
    finally:
        built.close()


@pytest.mark.services
def test_the_cli_checks_reports_and_exits_3_on_drift(monitored: FeatureStore) -> None:
    repo = str(monitored.config.repo_path)
    runner = CliRunner()
    unknown = runner.invoke(app, ["drift", "check", "-r", repo])
    assert unknown.exit_code == 0, unknown.output
    assert "scorer: unknown" in unknown.output
    client = monitored.online_client()
    shifted = rows(datetime.now(UTC) - timedelta(minutes=5), 160, BASE, 0, 9)
    monitored.write_online("stats", shifted)
    serve_lookups(client)
    drifted = runner.invoke(app, ["drift", "check", "scorer", "-r", repo])
    assert drifted.exit_code == 3, drifted.output
    assert "scorer: drift" in drifted.output
    assert "stats:amount" in drifted.output
    assert "training/serving skew" in drifted.output
    status = runner.invoke(app, ["drift", "status", "scorer", "-r", repo, "--json"])
    assert json.loads(status.output)["status"] == "drift"
    history = runner.invoke(app, ["drift", "history", "scorer", "-r", repo])
    assert history.output.index("drift") < history.output.index("unknown")
    nope = runner.invoke(app, ["drift", "check", "other", "-r", repo])
    assert nope.exit_code == 1
    assert "No DriftMonitor watches model 'other'" in nope.output


@pytest.mark.services
def test_the_server_returns_and_streams_drift_status(monitored: FeatureStore) -> None:
    server = start_server(monitored.config.repo_path, model="scorer")
    try:
        headers = {"Authorization": f"Bearer {server.key}"}
        before = httpx.get(f"{server.url}/v1/drift/scorer", headers=headers, timeout=10)
        assert before.json()["status"] == "unknown"
        _c, other_key = monitored.create_credential("other")
        denied = httpx.get(
            f"{server.url}/v1/drift/scorer",
            headers={"Authorization": f"Bearer {other_key}"},
            timeout=10,
        )
        assert denied.status_code in (401, 403)  # 401 until the server has loaded the new key
        events: list[dict[str, Any]] = []

        def listen() -> None:
            with httpx.stream(
                "GET", f"{server.url}/v1/drift/scorer/events", headers=headers, timeout=30
            ) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                        if len(events) == 2:
                            return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        deadline = time.monotonic() + 10
        while not events and time.monotonic() < deadline:
            time.sleep(0.05)
        assert events[0]["status"] == "unknown"
        client = monitored.online_client()
        serve_lookups(client)
        run_checks(monitored)
        listener.join(10)
        assert [e["status"] for e in events] == ["unknown", "ok"]
        looked_up = server.post({"entities": [{"user_id": 3}]}, headers=headers).json()
        assert looked_up["metadata"]["drift"]["status"] == "ok"
        detail = httpx.get(f"{server.url}/v1/drift/scorer", headers=headers, timeout=10).json()
        assert detail["features"]["stats:amount"]["status"] == "ok"
    finally:
        stop_server(server)


# -- the serving log ------------------------------------------------------------------------


def test_the_serving_log_is_bounded_and_never_holds_a_lookup_up() -> None:
    from featurestore.online.redis_store import RedisOnlineStore
    from featurestore.online.serving_log import QUEUE_LIMIT, ServingLog

    unreachable = RedisOnlineStore.from_url(f"redis://127.0.0.1:{_closed_port()}/0")
    log = ServingLog(unreachable, interval=0.05)
    for i in range(QUEUE_LIMIT * 2):
        log.offer(b"k", b"x%d" % i)  # Redis is unreachable: nothing waits for it
    assert len(log._queue) <= QUEUE_LIMIT
    log.flush(timeout=10)
    assert log.written == 0
    assert log.dropped == QUEUE_LIMIT * 2  # every sample accounted for, none silently


def _closed_port() -> int:
    from featurestore.devservices import free_port

    return free_port()  # nothing listens there


@pytest.mark.services
def test_lookups_are_sampled_at_the_monitors_rate(tmp_path: Path, services: Any) -> None:
    config = (
        f"project: rate{next(_n)}\nregistry: data/registry.db\n"
        f"online_store:\n  redis_url: {services.redis_url}\n"
    )
    defs = DEFS.replace("sample_rate=1.0", "sample_rate=0.2")
    repo = write_repo(tmp_path / "repo", {"featurestore.yaml": config, "defs.py": defs})
    random.seed(5)  # the client draws from the module's generator
    with FeatureStore(repo) as store:
        store.apply()
        client = store.online_client()
        for i in range(2000):
            client.get_online_features([{"user_id": i % USERS}], model="scorer")
        client.serving_log.flush()
        logged = client.serving_log.written
        entries = redis.Redis.from_url(store.config.redis_url).xrange(
            served_key(store.project, "scorer")
        )
    assert 320 <= logged <= 480  # 400 expected; binomial sd 18
    assert sum(len(msgpack_list(e[1][b"d"])) for e in entries) == logged


def msgpack_list(data: bytes) -> list[Any]:
    import msgpack

    return msgpack.unpackb(data, raw=False)


@pytest.mark.services
def test_the_python_client_watches_status_changes(monitored: FeatureStore) -> None:
    client = monitored.online_client()
    seen: list[str] = []

    def watch() -> None:
        for status in client.watch_drift("scorer", interval=0.05, timeout=20):
            seen.append(status["status"])
            if len(seen) == 2:
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.02)
    serve_lookups(client)
    run_checks(monitored)
    watcher.join(20)
    assert seen == ["unknown", "ok"]


@pytest.mark.services
def test_on_demand_features_are_profiled_and_monitored(tmp_path: Path, services: Any) -> None:
    """An on-demand feature gets a reference profile from the training set, is sampled when
    served, and drifts when what it is computed from moves (here the request field)."""
    defs = DEFS.replace(
        'svc = FeatureService(name="svc", features=[stats])',
        """from featurestore import RequestSource, on_demand_feature_view

req = RequestSource(name="req", schema=[Field(name="factor", dtype=Float64)])


@on_demand_feature_view(
    sources=[stats[["amount"]], req], schema=[Field(name="scaled", dtype=Float64)]
)
def scaled(row):
    return {"scaled": row["amount"] * row["factor"]}


svc = FeatureService(name="svc", features=[stats, scaled])""",
    )
    config = f"project: drift{next(_n)}\nregistry: data/registry.db\nonline_store:\n"
    config += f"  redis_url: {services.redis_url}\n"
    repo = write_repo(tmp_path / "repo", {"featurestore.yaml": config, "defs.py": defs})
    now = datetime.now(UTC)
    with FeatureStore(repo) as store:
        store.apply()
        trained = rows(now - timedelta(hours=3), 100, BASE, 0, 1)
        store.offline_store().write(store.snapshot().feature_view("stats"), 1, trained)
        store.write_online("stats", trained)
        spine = pa.table(
            {
                "user_id": pa.array(range(USERS), pa.int64()),
                "event_timestamp": pa.array([now - timedelta(hours=2)] * USERS, UTC_US),
                "factor": pa.array([1.0] * USERS, pa.float64()),
            }
        )
        store.get_training_data(spine, model="scorer")
        _id, profiles = store.registry.drift.reference(store.project, "scorer")
        assert profiles["scaled@v1:scaled"]["mean"] == pytest.approx(100, abs=2)
        client = store.online_client()
        for factor, expected in ((1.0, "ok"), (3.0, "drift")):
            direct = redis.Redis.from_url(store.config.redis_url)
            direct.delete(served_key(store.project, "scorer"))
            for i in range(6):
                client.get_online_features(
                    [{"user_id": u, "factor": factor} for u in range(i * 50, i * 50 + 50)],
                    model="scorer",
                )
            client.serving_log.flush()
            [detail] = run_checks(store)
            assert detail["features"]["scaled:scaled"]["status"] == expected, detail
            assert detail["features"]["stats:amount"]["status"] == "ok"
            assert detail["skew"]["scaled:scaled"]["skipped"] == "on-demand feature"
            assert detail["skew"]["stats:amount"]["mismatches"] == 0
