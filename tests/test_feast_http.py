"""Feast's HTTP API on `featurestore serve`: the same requests sent to `feast serve` (Feast
0.67) and to featurestore, on the same Parquet data materialized into each one's Redis,
answer the same JSON (values, names, order, event times); where the statuses differ, it
is where Feast's Redis store reports PRESENT for what is not (see feast_format.py). And
hostile input on the new routes answers a clear 4xx."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.devservices import free_port
from featurestore.materialize.backfill import backfill
from featurestore.migrate.feast import import_feast
from tests.test_feast_import import feast_repo_at
from tests.test_serving import Server, start_server, stop_server

pytest.importorskip("feast")
pytestmark = pytest.mark.services
FEAST = str(Path(sys.executable).parent / "feast")
UTC_US = pa.timestamp("us", tz="UTC")
EPOCH = "1970-01-01T00:00:00Z"

DEFINITIONS = """
CLICKS_TTL = {clicks_ttl}
from datetime import timedelta

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    RequestSource,
    ValueType,
)
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)
user_source = FileSource(
    name="user_source", path="data/users.parquet", timestamp_field="event_timestamp"
)
merchant_source = FileSource(
    name="merchant_source", path="data/merchants.parquet", timestamp_field="event_timestamp"
)
user_push = PushSource(name="user_push", batch_source=user_source)
user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    ttl=timedelta(days=1),
    schema=[
        Field(name="avg_amount", dtype=Float64),
        Field(name="txn_count", dtype=Int64),
        Field(name="country", dtype=String),
    ],
    source=user_push,
)
merchant_stats = FeatureView(
    name="merchant_stats",
    entities=[merchant],
    ttl=timedelta(days=7),
    schema=[Field(name="chargeback_rate", dtype=Float64)],
    source=merchant_source,
)
clicks_source = FileSource(name="clicks_source", path="data/clicks.parquet", timestamp_field="ts")
user_clicks = FeatureView(
    name="user_clicks",
    entities=[user],
    ttl=timedelta(seconds=CLICKS_TTL),
    schema=[Field(name="clicks", dtype=Int64)],
    source=clicks_source,
)
user_secrets = FeatureView(
    name="user_secrets",
    entities=[user],
    ttl=timedelta(days=1),
    schema=[Field(name="ssn", dtype=String)],
    source=user_source,
)
purchase = RequestSource(name="purchase", schema=[Field(name="amount", dtype=Float64)])


@on_demand_feature_view(
    sources=[user_stats[["avg_amount"]], purchase],
    schema=[Field(name="amount_vs_avg", dtype=Float64)],
    mode="python",
)
def amount_vs_avg(inputs: dict) -> dict:
    return {
        "amount_vs_avg": [
            amount / avg if avg else None
            for amount, avg in zip(inputs["amount"], inputs["avg_amount"])
        ]
    }


checkout = FeatureService(
    name="checkout", features=[merchant_stats, user_stats[["avg_amount", "country"]]]
)
"""
MODEL = """
from featurestore import FeatureMatch, Model, ModelMatch, Policy

from feast_imported import checkout

ranker = Model(name="ranker", feature_services=[checkout], purpose="ranking", owner="a@x.com")
no_secrets = Policy(
    name="no_secrets_for_ranking",
    effect="deny",
    features=FeatureMatch(views=["user_secrets"]),
    models=ModelMatch(purposes=["ranking"]),
)
"""
VIEW_OF = {
    "avg_amount": "user_stats",
    "txn_count": "user_stats",
    "country": "user_stats",
    "chargeback_rate": "merchant_stats",
    "clicks": "user_clicks",
    "amount_vs_avg": "amount_vs_avg",
}
ON_DEMAND = {"amount_vs_avg"}  # computed: never NOT_FOUND, null is NULL_VALUE
CLICKS_TTL = 18  # seconds: user 1's clicks expire while the servers run
TTL = {
    "user_stats": timedelta(days=1),
    "merchant_stats": timedelta(days=7),
    "user_clicks": timedelta(seconds=CLICKS_TTL),
}


@dataclass
class Both:
    ours: Server
    feast_url: str
    feast_repo: Path
    expired_at: datetime  # user 3's only row: older than user_stats' 1-day TTL
    clicks_at: datetime  # user 1's clicks: expire CLICKS_TTL seconds after

    def post(self, path: str, body: Any, **kwargs: Any) -> tuple[httpx.Response, httpx.Response]:
        content = orjson.dumps(body)
        json_type = {"Content-Type": "application/json"}  # Feast's pydantic body needs it
        headers = {"Authorization": f"Bearer {self.ours.key}", **json_type}
        mine = httpx.post(f"{self.ours.url}{path}", content=content, headers=headers, timeout=20)
        theirs = httpx.post(
            f"{self.feast_url}{path}", content=content, headers=json_type, timeout=20
        )
        return mine, theirs


def write_data(repo: Path, now: datetime) -> datetime:
    expired = now - timedelta(days=3, microseconds=1)
    users = {
        "user_id": pa.array([1, 2, 3, 4, 1], pa.int64()),
        "event_timestamp": pa.array(
            [
                now - timedelta(hours=1),
                now.replace(microsecond=0) - timedelta(minutes=5, milliseconds=250),  # 3 digits
                expired,
                now.replace(microsecond=0) - timedelta(seconds=30),  # no fraction
                now - timedelta(hours=5),  # an older row of user 1: not served
            ],
            UTC_US,
        ),
        "avg_amount": pa.array([10.5, None, 7.0, 1e-7, 99.0]),  # user 2's is a stored null
        "txn_count": pa.array([3, 4, 5, None, 1], pa.int64()),
        "country": pa.array(["DE", "FR", None, "IT", "XX"]),
        "ssn": pa.array(["1", "2", "3", "4", "5"]),
    }
    pq.write_table(pa.table(users), repo / "data" / "users.parquet")
    merchants = {
        "merchant_id": ["m1", "m2"],
        "event_timestamp": pa.array([now - timedelta(hours=2), now - timedelta(days=1)], UTC_US),
        "chargeback_rate": [0.25, 0.5],
    }
    pq.write_table(pa.table(merchants), repo / "data" / "merchants.parquet")
    clicks = {"user_id": pa.array([1], pa.int64()), "ts": pa.array([now], UTC_US)}
    pq.write_table(
        pa.table({**clicks, "clicks": pa.array([12], pa.int64())}), repo / "data" / "clicks.parquet"
    )
    return expired


def start_feast(repo: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # A log file, not a pipe: a full pipe would stall Feast's error logging.
    with (repo / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [FEAST, "serve", "-p", str(port), "--no-access-log", "--max-requests", "0"],
            cwd=repo,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # its workers are stopped with it, by its group id
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"feast serve exited: {(repo / 'serve.log').read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("feast serve did not start within 60 s")


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, services: Any) -> Iterator[Both]:
    """One Feast repo (Redis db 1) and its import (Redis db 0) on the same Parquet files,
    each materialized by its own tool; `feast serve` and `featurestore serve` on them."""
    root = tmp_path_factory.mktemp("feast_http")
    redis = services.redis_url.removeprefix("redis://").rsplit("/", 1)[0]
    definitions = DEFINITIONS.replace("{clicks_ttl}", str(CLICKS_TTL))
    feast_repo = feast_repo_at(root / "feast", "shop_feast", definitions)
    config = feast_repo / "feature_store.yaml"
    config.write_text(
        config.read_text().replace(
            "  type: sqlite\n  path: data/online.db\n",
            f'  type: redis\n  connection_string: "{redis},db=1"\n',
        )
    )
    now = datetime.now(UTC)
    expired = write_data(feast_repo, now)
    # featurestore first: the clicks must be within their TTL when written (the online
    # writer drops what is past it), Feast materializes whatever its window holds.
    ours_repo = root / "ours"
    import_feast(feast_repo, ours_repo)
    with (ours_repo / "featurestore.yaml").open("a") as f:
        f.write(f"online_store:\n  redis_url: {services.redis_url}\n")
    (ours_repo / "models.py").write_text(MODEL)
    with FeatureStore(ours_repo) as store:
        store.apply()
        backfill(store, online=True)
    assert datetime.now(UTC) < now + TTL["user_clicks"], "too slow to test an expiry"
    subprocess.run([FEAST, "apply"], cwd=feast_repo, check=True, capture_output=True)
    window = [(now - timedelta(days=30)).isoformat(), (now + timedelta(hours=1)).isoformat()]
    subprocess.run(
        [FEAST, "materialize", *(t[:19] for t in window)],
        cwd=feast_repo,
        check=True,
        capture_output=True,
    )
    feast_proc, feast_url = start_feast(feast_repo)
    ours = start_server(ours_repo, model="ranker")
    try:
        yield Both(ours, feast_url, feast_repo, expired, now)
    finally:
        stop_server(ours)
        os.killpg(feast_proc.pid, signal.SIGKILL)  # it ignores SIGTERM for a long while
        feast_proc.wait(15)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def view_of(name: str) -> str:
    return name.split("__")[0] if "__" in name else VIEW_OF[name]


def columns(body: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    names = body["metadata"]["feature_names"]
    assert len(names) == len(body["results"])
    return dict(zip(names, body["results"], strict=True))


def assert_same_answer(ours: httpx.Response, feast: httpx.Response, keys: list[str]) -> None:
    """Same names (join keys first, in the request's order, then views grouped as Feast
    groups them), values and event times; statuses as Feast names them, with Feast's
    Redis store's PRESENT-for-everything told apart (NOT_FOUND, NULL_VALUE,
    OUTSIDE_MAX_AGE: then ours serves no value, Feast the stale one)."""
    assert ours.status_code == feast.status_code == 200, (ours.text, feast.text)
    assert ours.headers["content-type"] == "application/json"
    mine, theirs = ours.json(), feast.json()
    assert set(mine) == {"metadata", "results"} == set(theirs)
    names, feast_names = mine["metadata"]["feature_names"], theirs["metadata"]["feature_names"]
    assert names[: len(keys)] == feast_names[: len(keys)] == keys
    assert sorted(names) == sorted(feast_names)

    def view_runs(features: list[str]) -> list[str]:
        views = [view_of(f) for f in features]
        return [v for i, v in enumerate(views) if i == 0 or views[i - 1] != v]

    assert view_runs(names[len(keys) :]) == view_runs(feast_names[len(keys) :])
    a, b = columns(mine), columns(theirs)
    for name in names:
        ours_col, feast_col = a[name], b[name]
        assert set(ours_col) == {"values", "statuses", "event_timestamps"}
        for i, (status, feast_status) in enumerate(
            zip(ours_col["statuses"], feast_col["statuses"], strict=True)
        ):
            value, feast_value = ours_col["values"][i], feast_col["values"][i]
            at, feast_at = ours_col["event_timestamps"][i], feast_col["event_timestamps"][i]
            assert feast_status == "PRESENT"  # Feast's Redis store: always
            if status == "NOT_FOUND" and feast_at != EPOCH:
                # past its TTL when materialized: featurestore never wrote it online
                assert instant(feast_at) < datetime.now(UTC) - TTL[view_of(name)], (name, i)
                assert value is None
                assert at == EPOCH
                continue
            assert instant(at) == instant(feast_at), (name, i)
            if status == "OUTSIDE_MAX_AGE":
                assert value is None, (name, i)
                assert feast_value is not None, (name, i)
                continue
            assert value == feast_value, (name, i, value, feast_value)
            if value is not None:
                assert status == "PRESENT", (name, i)
            elif feast_at == EPOCH and view_of(name) not in ON_DEMAND:
                assert status == "NOT_FOUND", (name, i)
            else:
                assert status == "NULL_VALUE", (name, i)


def test_several_entities_and_views_answer_as_feast_does(both: Both) -> None:
    body = {
        "features": [
            "user_stats:avg_amount",
            "user_stats:txn_count",
            "merchant_stats:chargeback_rate",
            "user_stats:country",
        ],
        "entities": {"user_id": [1, 2, 3, 4, 99], "merchant_id": ["m1", "m2", "m1", "zz", "m1"]},
    }
    ours, feast = both.post("/get-online-features", body)
    assert_same_answer(ours, feast, ["user_id", "merchant_id"])
    got = columns(ours.json())
    assert got["user_id"]["values"] == [1, 2, 3, 4, 99]
    assert got["user_id"]["statuses"] == ["PRESENT"] * 5
    assert got["user_id"]["event_timestamps"] == [EPOCH] * 5
    assert got["avg_amount"]["values"] == [10.5, None, None, 1e-7, None]
    # user 3's row was 3 days old, past the 1-day TTL: never written (Feast serves it)
    assert got["avg_amount"]["statuses"] == [
        "PRESENT",
        "NULL_VALUE",
        "NOT_FOUND",
        "PRESENT",
        "NOT_FOUND",
    ]
    assert got["txn_count"]["statuses"][3] == "NULL_VALUE"
    assert got["country"]["values"] == ["DE", "FR", None, "IT", None]
    assert got["chargeback_rate"]["statuses"] == [
        "PRESENT",
        "PRESENT",
        "PRESENT",
        "NOT_FOUND",
        "PRESENT",
    ]
    times = got["avg_amount"]["event_timestamps"]  # Feast's adaptive precision
    assert [len(times[i]) for i in (0, 1, 3)] == [27, 24, 20]  # .123456Z, .123Z, Z


def test_a_value_past_its_ttl_is_reported_not_served(both: Both) -> None:
    wait = (both.clicks_at + TTL["user_clicks"] - datetime.now(UTC)).total_seconds()
    time.sleep(max(0.0, wait) + 0.5)
    body = {
        "features": ["user_clicks:clicks", "user_stats:txn_count"],
        "entities": {"user_id": [1]},
    }
    ours, feast = both.post("/get-online-features", body)
    assert_same_answer(ours, feast, ["user_id"])
    got = columns(ours.json())
    assert got["clicks"]["statuses"] == ["OUTSIDE_MAX_AGE"]
    assert got["clicks"]["values"] == [None]
    assert instant(got["clicks"]["event_timestamps"][0]) == both.clicks_at
    assert columns(feast.json())["clicks"]["values"] == [12]  # Feast checks no TTL online
    assert got["txn_count"]["values"] == [3]


def test_one_entity_and_full_feature_names(both: Both) -> None:
    body = {
        "features": ["user_stats:avg_amount", "user_stats:country"],
        "entities": {"user_id": [1]},
        "full_feature_names": True,
    }
    ours, feast = both.post("/get-online-features", body)
    assert_same_answer(ours, feast, ["user_id"])
    assert ours.json()["metadata"]["feature_names"] == [
        "user_id",
        "user_stats__avg_amount",
        "user_stats__country",
    ]
    assert columns(ours.json())["user_stats__avg_amount"]["values"] == [10.5]  # the latest row


def test_an_on_demand_feature_over_request_data(both: Both) -> None:
    body = {
        "features": ["amount_vs_avg:amount_vs_avg", "user_stats:avg_amount"],
        "entities": {"user_id": [1, 2, 99], "amount": [21.0, 5.0, 3.0]},
    }
    ours, feast = both.post("/get-online-features", body)
    assert_same_answer(ours, feast, ["user_id"])
    got = columns(ours.json())
    assert list(got) == ["user_id", "avg_amount", "amount_vs_avg"]  # on-demand last
    assert got["amount_vs_avg"]["values"] == [2.0, None, None]
    assert got["amount_vs_avg"]["statuses"] == ["PRESENT", "NULL_VALUE", "NULL_VALUE"]
    assert got["amount_vs_avg"]["event_timestamps"] == [EPOCH] * 3


def test_a_feature_service_in_either_key_order(both: Both) -> None:
    for entities in (
        {"merchant_id": ["m1", "m2"], "user_id": [2, 1]},
        {"user_id": [4], "merchant_id": ["m2"]},
    ):
        for full in (False, True):
            body = {"feature_service": "checkout", "entities": entities, "full_feature_names": full}
            ours, feast = both.post("/get-online-features", body)
            assert_same_answer(ours, feast, list(entities))


CLIENT_CONFIG = """\
project: shop_feast
registry: {registry}
provider: local
online_store:
  type: remote
  path: {url}
auth:
  type: kubernetes
  user_token: {key}
entity_key_serialization_version: 3
"""


def test_a_feast_client_reads_through_featurestore_serve(both: Both, tmp_path: Path) -> None:
    """Feast's own SDK, its online store set to `remote` at featurestore's URL with the
    API key as its bearer token, gets what it gets from its own Redis; and Feast's
    exception for an unknown view, with our message."""
    from feast import FeatureStore as FeastStore
    from feast.errors import FeatureViewNotFoundException

    (tmp_path / "feature_store.yaml").write_text(
        CLIENT_CONFIG.format(
            registry=both.feast_repo / "data" / "registry.db", url=both.ours.url, key=both.ours.key
        )
    )
    client = FeastStore(repo_path=str(tmp_path))
    local = FeastStore(repo_path=str(both.feast_repo))
    rows = [
        {"user_id": u, "merchant_id": m} for u, m in ((1, "m1"), (2, "zz"), (4, "m2"), (99, "m1"))
    ]
    refs = ["user_stats:avg_amount", "user_stats:country", "merchant_stats:chargeback_rate"]
    for features in (refs, "checkout"):
        asked = client.get_feature_service(features) if isinstance(features, str) else features
        theirs = local.get_online_features(features=asked, entity_rows=rows).to_dict()
        ours = client.get_online_features(features=asked, entity_rows=rows).to_dict()
        assert ours == theirs
    assert ours["avg_amount"] == [10.5, None, 1e-7, None]
    with pytest.raises(FeatureViewNotFoundException, match="Did you mean 'user_stats'"):
        client.get_online_features(features=["user_stat:avg_amount"], entity_rows=rows)


def test_the_keys_model_policies_decide_a_feature_list(both: Both) -> None:
    body = {"features": ["user_stats:avg_amount", "user_secrets:ssn"], "entities": {"user_id": [1]}}
    ours, feast = both.post("/get-online-features", body)
    assert feast.status_code == 200  # Feast, without permissions, serves it
    assert ours.status_code == 403, ours.text
    detail = json.loads(ours.json())
    assert (detail["module"], detail["class"]) == ("feast.errors", "FeastPermissionError")
    assert "no_secrets_for_ranking" in detail["message"]


def test_errors_answer_in_feasts_shape_with_our_messages(both: Both) -> None:
    cases = [
        ({"features": ["user_stat:avg_amount"], "entities": {"user_id": [1]}}, 404, 404),
        ({"feature_service": "nope", "entities": {"user_id": [1]}}, 404, 404),
        ({"features": ["user_stats:avg"], "entities": {"user_id": [1]}}, 404, 500),
        ({"features": ["user_stats:avg_amount"], "entities": {"merchant_id": ["m1"]}}, 422, 500),
        ({"features": ["user_stats:avg_amount"], "entities": {"user_id": ["x"]}}, 422, 500),
    ]
    classes = []
    for body, status, feast_status in cases:
        ours, feast = both.post("/get-online-features", body)
        assert (ours.status_code, feast.status_code) == (status, feast_status), ours.text
        detail = json.loads(ours.json())  # a JSON string holding the detail, as Feast sends
        assert set(detail) == {"module", "class", "message"}
        classes.append(detail["class"])
        if feast_status == 404:  # Feast's own class, so Feast's REST client raises it again
            assert detail["module"] == "feast.errors"
            assert detail["class"] == json.loads(feast.json())["class"]
    assert classes[2:] == ["FeatureNotFound", "EntityInputError", "EntityInputError"]
    unknown = json.loads(both.post("/get-online-features", cases[0][0])[0].json())
    assert "Did you mean 'user_stats'" in unknown["message"]


HOSTILE: dict[str, tuple[bytes, int, str]] = {
    "not JSON": (b"{nope", 422, "not valid JSON"),
    "not an object": (b"[1, 2]", 422, "must be a JSON object"),
    "deep nesting": (b"[" * 5000 + b"]" * 5000, 422, "not valid JSON"),
    "no entities": (b'{"features": ["user_stats:avg_amount"]}', 422, 'no "entities"'),
    "entities a list": (
        b'{"features": ["user_stats:avg_amount"], "entities": [{"user_id": 1}]}',
        422,
        '"entities" must be an object',
    ),
    "features a string": (
        b'{"features": "user_stats:avg_amount", "entities": {"user_id": [1]}}',
        422,
        '"features" must be a list',
    ),
    "a feature not a string": (
        b'{"features": [3], "entities": {"user_id": [1]}}',
        422,
        '"features" item 0 must be a string',
    ),
    "not a reference": (
        b'{"features": ["avg_amount"], "entities": {"user_id": [1]}}',
        422,
        'is not a reference "view:feature"',
    ),
    "no features": (b'{"features": [], "entities": {"user_id": [1]}}', 422, "No features"),
    "both": (
        b'{"features": ["user_stats:avg_amount"], "feature_service": "checkout", '
        b'"entities": {"user_id": [1]}}',
        422,
        "not both",
    ),
    "unknown field": (
        b'{"feature": ["user_stats:avg_amount"], "entities": {"user_id": [1]}}',
        422,
        "Did you mean 'features'",
    ),
    "flag not a bool": (
        b'{"features": ["user_stats:avg_amount"], "entities": {"user_id": [1]}, '
        b'"full_feature_names": "yes"}',
        422,
        "true or false",
    ),
    "ragged columns": (
        b'{"features": ["user_stats:avg_amount"], "entities": {"user_id": [1, 2], '
        b'"merchant_id": ["m1"]}}',
        422,
        "differ in length",
    ),
    "nested key value": (
        b'{"features": ["user_stats:avg_amount"], "entities": {"user_id": [[1]]}}',
        400,
        "user_id",
    ),
    "empty": (
        b'{"features": ["user_stats:avg_amount"], "entities": {"user_id": []}}',
        422,
        "at least one",
    ),
    "too many bytes": (
        b'{"entities": {}, "pad": "' + b"x" * (2 << 20) + b'"}',
        413,
        "limit is 1048576",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_lookups_answer_a_clear_4xx(both: Both, case: str) -> None:
    body, status, needle = HOSTILE[case]
    r = httpx.post(
        f"{both.ours.url}/get-online-features",
        content=body,
        headers={"Authorization": f"Bearer {both.ours.key}"},
        timeout=20,
    )
    assert r.status_code == status, r.text
    assert needle in json.loads(r.json())["message"]


def test_the_key_is_required_and_checked(both: Both) -> None:
    body = b'{"features": ["user_stats:avg_amount"], "entities": {"user_id": [1]}}'
    for path in ("/get-online-features", "/push"):
        for headers in ({}, {"Authorization": "Bearer fsk_nope"}, {"Authorization": "Basic x"}):
            r = httpx.post(f"{both.ours.url}{path}", content=body, headers=headers, timeout=20)
            assert r.status_code == 401, (path, headers, r.text)
            assert r.headers["www-authenticate"] == 'Bearer realm="featurestore"'
            assert json.loads(r.json())["class"] == "AuthenticationError"
    r = httpx.post(
        f"{both.ours.url}/get-online-features",
        content=body,
        headers={"X-API-Key": both.ours.key or ""},
        timeout=20,
    )
    assert r.status_code == 200  # the one header a Feast client adds


PUSH_HOSTILE: dict[str, tuple[Any, int, str]] = {
    "not an object": ([1], 422, "must be a JSON object"),
    "no source": ({"df": {"user_id": [1]}}, 422, '"push_source_name" must be a string'),
    "no df": ({"push_source_name": "user_stats"}, 422, 'no "df"'),
    "df a list": ({"push_source_name": "user_stats", "df": [1]}, 422, '"df" must be an object'),
    "column not a list": (
        {"push_source_name": "user_stats", "df": {"user_id": 1}},
        422,
        "must be a list",
    ),
    "ragged": (
        {"push_source_name": "user_stats", "df": {"user_id": [1], "avg_amount": []}},
        422,
        "differ in length",
    ),
    "no rows": ({"push_source_name": "user_stats", "df": {"user_id": []}}, 422, "no rows"),
    "bad mode": (
        {"push_source_name": "user_stats", "df": {"user_id": [1]}, "to": "onlin"},
        422,
        "Did you mean 'online'",
    ),
    "unknown field": (
        {"push_source": "user_stats", "df": {"user_id": [1]}},
        422,
        "Did you mean 'push_source_name'",
    ),
    "unknown source": (
        {"push_source_name": "user_pushh", "df": {"user_id": [1]}},
        422,
        "No feature view",
    ),
}


@pytest.mark.parametrize("case", list(PUSH_HOSTILE))
def test_hostile_pushes_answer_a_clear_4xx(both: Both, case: str) -> None:
    body, status, needle = PUSH_HOSTILE[case]
    r = httpx.post(
        f"{both.ours.url}/push",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {both.ours.key}"},
        timeout=20,
    )
    assert r.status_code == status, r.text
    assert needle in json.loads(r.json())["message"]


def test_a_push_writes_the_views_its_source_feeds_as_feast_does(both: Both) -> None:
    """The same Feast push to both servers, then the same lookup: the same answer. A model's
    key may not push; a push key of the views the source feeds may."""
    at = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0, tzinfo=None)
    push = {
        "push_source_name": "user_push",
        "df": {
            "user_id": [9, 10],
            "avg_amount": [42.5, 0.25],
            "txn_count": [7, 1],
            "country": ["PT", None],
            "event_timestamp": [str(at), str(at)],
        },
        "to": "online",
    }
    refused = httpx.post(
        f"{both.ours.url}/push",
        content=orjson.dumps(push),
        headers={"Authorization": f"Bearer {both.ours.key}"},
        timeout=20,
    )
    assert refused.status_code == 403, refused.text  # the ranker's key reads, never pushes
    with FeatureStore(both.ours.repo) as store:
        _credential, key = store.create_push_credential(["user_stats"])
    for _ in range(50):  # the server loads new keys within its refresh interval
        mine = httpx.post(
            f"{both.ours.url}/push",
            content=orjson.dumps(push),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=20,
        )
        if mine.status_code != 401:
            break
        time.sleep(0.1)
    theirs = httpx.post(
        f"{both.feast_url}/push",
        content=orjson.dumps(push),
        headers={"Content-Type": "application/json"},
        timeout=20,
    )
    assert (mine.status_code, theirs.status_code) == (200, 200), (mine.text, theirs.text)
    refs = [f"user_stats:{f}" for f in ("avg_amount", "txn_count", "country")]
    mine_lookup, feast_lookup = both.post(
        "/get-online-features", {"features": refs, "entities": {"user_id": [9, 10]}}
    )
    assert_same_answer(mine_lookup, feast_lookup, ["user_id"])
    values = columns(mine_lookup.json())
    assert values["avg_amount"]["values"] == [42.5, 0.25]
    assert values["country"]["values"] == ["PT", None]


def test_feast_route_lookups_and_errors_are_counted(both: Both) -> None:
    def samples() -> dict[str, float]:
        lines = both.ours.get("/metrics").text.splitlines()
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in lines
            if line and not line.startswith("#")
        }

    before = samples()
    both.post(
        "/get-online-features", {"features": ["user_stats:avg"], "entities": {"user_id": [1]}}
    )
    both.post(
        "/get-online-features",
        {"features": ["user_stats:avg_amount"], "entities": {"user_id": [1]}},
    )
    after = samples()
    error = 'featurestore_request_errors_total{error="FeatureNotFound",status="404"}'
    lookups = 'featurestore_lookups_total{model="ranker"}'
    assert after[error] - before.get(error, 0) == 1
    assert after[lookups] - before.get(lookups, 0) == 1
