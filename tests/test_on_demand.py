"""On-demand views: request-time features computed the same way online and in training.

Real Redis and Parquet: the repo is applied, materialized, looked up (in-process and
asyncio) and joined; the online values must equal the training set's for the same inputs.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.errors import (
    DefinitionError,
    EntityInputError,
    OnDemandViewError,
    PolicyDeniedError,
    RepoLoadError,
)
from featurestore.online.on_demand import ERROR
from tests.helpers import replace_in_file, write_repo

pytestmark = pytest.mark.services
_projects = itertools.count()
NOW = datetime.now(UTC).replace(microsecond=0)

DEFS = """
import math
from datetime import timedelta

from featurestore import (
    Bool,
    Entity,
    FeatureMatch,
    FeatureService,
    FeatureView,
    Field,
    Float64,
    Int64,
    Model,
    ModelMatch,
    ParquetSource,
    Policy,
    RequestSource,
    String,
    on_demand_feature_view,
)

user = Entity(name="user", join_key="user_id", dtype=Int64)
src = ParquetSource(name="src", path="data/users")
user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    source=src,
    schema=[
        Field(name="avg_amount", dtype=Float64),
        Field(name="txn_count", dtype=Int64),
        Field(name="country", dtype=String, tags={"pii": "true"}),
    ],
    ttl=timedelta(days=2),
)
txn = RequestSource(name="txn", schema=[Field(name="amount", dtype=Float64)])
LARGE = 3.0


@on_demand_feature_view(
    sources=[user_stats[["avg_amount", "txn_count"]], txn],
    schema=[Field(name="amount_ratio", dtype=Float64), Field(name="is_large", dtype=Bool)],
)
def amount_vs_avg(row):
    avg = row["avg_amount"]
    if avg is None or row["amount"] is None:
        return {"amount_ratio": None, "is_large": None}
    ratio = row["amount"] / avg if avg else math.inf
    return {"amount_ratio": ratio, "is_large": ratio > LARGE}


@on_demand_feature_view(
    sources=[user_stats[["avg_amount"]], txn],
    schema=[Field(name="amount_diff", dtype=Float64)],
    mode="pandas",
)
def amount_diff_pd(df):
    import pandas as pd

    out = pd.DataFrame()
    out["amount_diff"] = df["amount"] - df["user_stats__avg_amount"]  # Feast's full name
    assert (df["avg_amount"].isna() | (df["avg_amount"] == df["user_stats__avg_amount"])).all()
    return out


@on_demand_feature_view(
    sources=[user_stats[["country"]]],
    schema=[Field(name="country_upper", dtype=String)],
)
def country_upper(row):
    return {"country_upper": row["country"].upper() if row["country"] else None}


@on_demand_feature_view(
    sources=[user_stats[["txn_count"]]],
    schema=[Field(name="fragile", dtype=Int64)],
)
def fragile(row):
    if row["txn_count"] == 13:
        raise ValueError("unlucky")
    if row["txn_count"] == 7:
        return {"fragile": "seven"}
    return {"fragile": row["txn_count"] * 2}


scored = FeatureService(
    name="scored",
    features=[user_stats[["avg_amount"]], amount_vs_avg, amount_diff_pd],
)
fraud_model = Model(
    name="fraud_model", feature_services=[scored], purpose="fraud", owner="risk@x.com"
)
marketing = FeatureService(name="marketing", features=[country_upper])
"""

PROMO = """
from defs import user_stats

from featurestore import FeatureMatch, FeatureService, Model, ModelMatch, Policy

promo = FeatureService(name="promo", features=[user_stats[["txn_count"]]])
promo_model = Model(
    name="promo_model", feature_services=[promo], purpose="marketing", owner="growth@x.com"
)
no_pii = Policy(
    name="no_pii",
    effect="deny",
    features=FeatureMatch(tags={"pii": "true"}),
    models=ModelMatch(purposes=["marketing"]),
)
"""


def write_users(
    repo: Path, rows: list[tuple[int, float | None, int, str | None, datetime]]
) -> None:
    path = repo / "data" / "users"
    path.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int64()),
            "avg_amount": pa.array([r[1] for r in rows], pa.float64()),
            "txn_count": pa.array([r[2] for r in rows], pa.int64()),
            "country": pa.array([r[3] for r in rows], pa.string()),
            "event_timestamp": pa.array([r[4] for r in rows], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, path / "part-0.parquet")


USERS = [
    (1, 10.0, 3, "fr", NOW - timedelta(hours=3)),
    (2, 0.0, 13, "de", NOW - timedelta(hours=2)),
    (3, None, 7, None, NOW - timedelta(hours=1)),
]


@pytest.fixture
def store(tmp_path: Path, services: Any) -> Any:
    project = f"od{next(_projects)}"
    config = (
        f"project: {project}\nregistry: data/registry.db\n"
        f"online_store:\n  redis_url: {services.redis_url}\n"
    )
    repo = write_repo(
        tmp_path / "repo", {"defs.py": DEFS, "promo.py": PROMO, "featurestore.yaml": config}
    )
    write_users(repo, USERS)
    with FeatureStore(repo) as s:
        s.apply()
        s.materialize(start=NOW - timedelta(days=1), end=NOW + timedelta(seconds=1))
        yield s


def entity_rows(amounts: dict[int, float | None]) -> list[dict[str, Any]]:
    return [{"user_id": u, "amount": a} for u, a in amounts.items()]


AMOUNTS = {1: 45.0, 2: 5.0, 3: 1.0, 4: 2.0}  # 4 was never written


def test_lookup_computes_from_stored_values_and_request_fields(store: Any) -> None:
    response = store.get_online_features(entity_rows(AMOUNTS), model="fraud_model")
    got = response.to_dict()
    assert got["user_id"] == [1, 2, 3, 4]
    assert got["avg_amount"] == [10.0, 0.0, None, None]
    assert got["amount_ratio"] == [4.5, math.inf, None, None]
    assert got["is_large"] == [True, True, None, None]
    assert got["amount_diff"][:2] == [35.0, 5.0]
    assert got["amount_diff"][2:] == [None, None]  # NaN from pandas is null
    statuses = response.status_dict()
    assert statuses["amount_ratio"] == ["present"] * 4
    assert statuses["avg_amount"] == ["present", "present", "present", "missing"]
    # Hidden inputs (txn_count) are read but not returned.
    assert list(got) == ["user_id", "avg_amount", "amount_ratio", "is_large", "amount_diff"]
    # Event time of a computed value: its inputs' latest.
    times = response.event_times()["amount_ratio"]
    assert times[0] == USERS[0][4]
    assert times[3] is None


def test_online_equals_training_set_value_for_value(store: Any) -> None:
    online = store.get_online_features(entity_rows(AMOUNTS), model="fraud_model").to_dict()
    entities = pa.table(
        {
            "user_id": pa.array(list(AMOUNTS), pa.int64()),
            "amount": pa.array(list(AMOUNTS.values()), pa.float64()),
            "event_timestamp": pa.array([NOW] * 4, pa.timestamp("us", tz="UTC")),
        }
    )
    training = store.get_training_data(entities, model="fraud_model").table
    assert training is not None
    assert training.column_names == [
        "user_id",
        "amount",
        "event_timestamp",
        "avg_amount",
        "amount_ratio",
        "is_large",
        "amount_diff",
    ]
    for name in ("avg_amount", "amount_ratio", "is_large", "amount_diff"):
        assert training.column(name).to_pylist() == online[name], name
    assert training.schema.field("is_large").type == pa.bool_()
    assert training.schema.field("amount_ratio").type == pa.float64()


def test_async_lookup_and_feature_lists(store: Any) -> None:
    async def lookup() -> Any:
        return await store.get_online_features_async(
            [{"user_id": 1, "amount": 20.0}], features=["amount_vs_avg:amount_ratio"]
        )

    response = asyncio.run(lookup())
    assert response.to_dict() == {"user_id": [1], "amount_ratio": [2.0]}


def test_missing_or_mistyped_request_field_names_it(store: Any) -> None:
    with pytest.raises(EntityInputError, match=r"row 1 has no request field 'amount'.*txn"):
        store.get_online_features(
            [{"user_id": 1, "amount": 1.0}, {"user_id": 2}], model="fraud_model"
        )
    with pytest.raises(EntityInputError, match=r"row 0: request field 'amount'.*float64"):
        store.get_online_features([{"user_id": 1, "amount": "12"}], model="fraud_model")
    with pytest.raises(EntityInputError, match="request field 'amount'"):
        store.get_online_features([{"user_id": 1, "amount": True}], model="fraud_model")
    entities = pa.table(
        {"user_id": [1], "event_timestamp": pa.array([NOW], pa.timestamp("us", tz="UTC"))}
    )
    with pytest.raises(EntityInputError, match="no column 'amount'"):
        store.get_training_data(entities, model="fraud_model")


def test_a_failing_function_fails_its_row_and_feature_only(store: Any) -> None:
    client = store.online_client()
    response = client.get_online_features(
        [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}],
        features=["fragile:fragile", "user_stats:txn_count"],
    )
    got = response.to_dict()
    assert got["fragile"] == [6, None, None]
    assert got["txn_count"] == [3, 13, 7]
    assert response.status_dict()["fragile"] == ["present", ERROR, ERROR]
    errors = response.error_dict()["fragile"]
    assert errors[0] is None
    assert "ValueError: unlucky" in errors[1]
    assert "must be int64" in errors[2]
    assert "'seven'" in errors[2]
    body = response.to_json_dict()
    assert body["results"][0]["errors"] == errors
    assert "errors" not in body["results"][1]
    assert client.on_demand_failures(reset=True) == {"fragile@v1": 2}
    assert client.on_demand_failures() == {}


def test_training_set_counts_failed_values(store: Any) -> None:
    entities = pa.table(
        {
            "user_id": pa.array([1, 2, 3], pa.int64()),
            "event_timestamp": pa.array([NOW] * 3, pa.timestamp("us", tz="UTC")),
        }
    )
    result = store.get_training_data(entities, features=["fragile:fragile"])
    assert result.table.column("fragile").to_pylist() == [6, None, None]
    assert result.on_demand_failures == {"fragile@v1": 2}


def test_a_model_denied_an_input_is_denied_the_derived_feature(store: Any) -> None:
    _credential, key = store.create_credential("promo_model")
    client = store.online_client(api_key=key)
    assert client.get_online_features(
        [{"user_id": 1}], features=["user_stats:txn_count"]
    ).to_dict() == {"user_id": [1], "txn_count": [3]}
    with pytest.raises(PolicyDeniedError, match=r"country_upper.*no_pii.*input user_stats"):
        client.get_online_features([{"user_id": 1}], features=["country_upper:country_upper"])


def test_plan_denies_derived_feature_and_explicit_allow_overrides(
    tmp_path: Path, services: Any
) -> None:
    uses = (
        PROMO
        + """
from defs import marketing

upper_model = Model(
    name="upper_model", feature_services=[marketing], purpose="marketing", owner="g@x.com"
)
"""
    )
    repo = write_repo(tmp_path / "repo", {"defs.py": DEFS, "promo.py": uses})
    with FeatureStore(repo) as s, pytest.raises(RepoLoadError, match=r"country_upper.*no_pii"):
        s.plan()
    allow = (
        uses
        + """
allow_upper = Policy(
    name="allow_upper",
    effect="allow",
    features=FeatureMatch(views=["country_upper"]),
    models=ModelMatch(purposes=["marketing"]),
)
"""
    )
    (repo / "promo.py").write_text(allow)
    with FeatureStore(repo) as s:
        assert s.plan().has_changes


def test_function_change_makes_a_new_version_and_pins_hold(store: Any) -> None:
    repo = store.config.repo_path
    before = store.get_online_features([{"user_id": 1, "amount": 20.0}], model="fraud_model")
    replace_in_file(
        repo / "defs.py", 'return {"amount_ratio": ratio,', 'return {"amount_ratio": ratio * 2,'
    )
    with FeatureStore(repo) as s:
        plan = s.plan()
        change = next(c for c in plan.changes if c.name == "amount_vs_avg")
        assert change.change == "new_version"
        assert change.version == 2
        assert any(f.path == "function" for f in change.fields)
        s.apply()
        # The model stays on v1 until promoted; an ad-hoc lookup follows the latest.
        pinned = s.get_online_features([{"user_id": 1, "amount": 20.0}], model="fraud_model")
        assert pinned.to_dict()["amount_ratio"] == before.to_dict()["amount_ratio"] == [2.0]
        latest = s.get_online_features(
            [{"user_id": 1, "amount": 20.0}], features=["amount_vs_avg:amount_ratio"]
        )
        assert latest.to_dict()["amount_ratio"] == [4.0]
    # A comment or a reformat is not a new version (the source shown is updated).
    replace_in_file(repo / "defs.py", "    avg = row", "    # the average\n    avg = row")
    with FeatureStore(repo) as s:
        change = next(c for c in s.plan().pending if c.name == "amount_vs_avg")
        assert change.change == "metadata"
        assert change.version == 2


def test_new_input_version_makes_a_new_on_demand_version(store: Any) -> None:
    repo = store.config.repo_path
    replace_in_file(
        repo / "defs.py",
        'Field(name="txn_count", dtype=Int64),',
        'Field(name="txn_count", dtype=Int64),\n        Field(name="extra", dtype=Int64),',
    )
    with FeatureStore(repo) as s:
        changes = {c.name: c for c in s.plan().pending}
        assert changes["user_stats"].version == 2
        assert changes["amount_vs_avg"].version == 2
        s.apply()
        # The pinned v1 still reads user_stats@v1.
        got = s.get_online_features([{"user_id": 1, "amount": 20.0}], model="fraud_model")
        assert got.to_dict()["amount_ratio"] == [2.0]


def test_on_demand_views_cannot_be_materialized(store: Any) -> None:
    with pytest.raises(OnDemandViewError, match="on-demand view"):
        store.materialize(["amount_vs_avg"], start=NOW - timedelta(days=1), end=NOW)


def test_definition_errors_are_clear(tmp_path: Path) -> None:
    from featurestore import Field, OnDemandFeatureView, RequestSource

    request = RequestSource(name="r", schema=[Field(name="x", dtype="float64")])
    with pytest.raises(DefinitionError, match="mode must be 'python' or 'pandas'"):
        OnDemandFeatureView(
            name="v",
            sources=[request],
            schema=[Field(name="y", dtype="float64")],
            function=_double,
            mode="spark",
        )
    with pytest.raises(DefinitionError, match="defined with `def`"):
        OnDemandFeatureView(
            name="v",
            sources=[request],
            schema=[Field(name="y", dtype="float64")],
            function=lambda row: row,
        )
    with pytest.raises(DefinitionError, match=r"'_HELPER'.*from its module"):
        OnDemandFeatureView(
            name="v",
            sources=[request],
            schema=[Field(name="y", dtype="float64")],
            function=_uses_helper,
        )
    with pytest.raises(DefinitionError, match="annotated with DataFrames"):
        OnDemandFeatureView(
            name="v",
            sources=[request],
            schema=[Field(name="y", dtype="float64")],
            function=_pandas_like,
        )
    with pytest.raises(DefinitionError, match="timestamps"):
        RequestSource(name="r", schema=[Field(name="event_timestamp", dtype="int64")])


def test_request_only_view_and_repo_problems(tmp_path: Path) -> None:
    bad = DEFS.replace(
        'sources=[user_stats[["txn_count"]]],\n    schema=[Field(name="fragile"',
        'sources=["nope"],\n    schema=[Field(name="fragile"',
    )
    repo = write_repo(tmp_path / "repo", {"defs.py": bad})
    with FeatureStore(repo) as s, pytest.raises(RepoLoadError, match="unknown feature view 'nope'"):
        s.load_repo()


def _double(row: dict[str, Any]) -> dict[str, Any]:
    return {"y": row["x"] * 2}


class _Helper:
    pass


_HELPER = _Helper()


def _uses_helper(row: dict[str, Any]) -> dict[str, Any]:
    return {"y": _HELPER}


class DataFrame:  # what the check looks for: an annotation naming a DataFrame
    pass


def _pandas_like(df: DataFrame) -> DataFrame:
    return df


def test_over_http_request_fields_and_failures(store: Any) -> None:
    from fastapi.testclient import TestClient

    from featurestore.serving.app import create_app

    _credential, key = store.create_credential("fraud_model")
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(feature_store=store)) as http:
        ok = http.post(
            "/v1/features",
            json={"entities": {"user_id": [1, 4], "amount": [45.0, 2.0]}},
            headers=headers,
        )
        assert ok.status_code == 200, ok.text
        body = ok.json()
        names = body["metadata"]["feature_names"]
        ratio = body["results"][names.index("amount_ratio")]
        assert ratio["values"] == [4.5, None]
        assert ratio["statuses"] == ["present", "present"]
        missing = http.post("/v1/features", json={"entities": [{"user_id": 1}]}, headers=headers)
        assert missing.status_code == 422
        assert "request field 'amount'" in missing.json()["detail"]
        wrong = http.post(
            "/v1/features", json={"entities": [{"user_id": 1, "amount": [1]}]}, headers=headers
        )
        assert wrong.status_code == 422
        assert "must be float64" in wrong.json()["detail"]
        failing = http.post(
            "/v1/features",
            json={"features": ["fragile:fragile"], "entities": [{"user_id": 2}, {"user_id": 1}]},
            headers=headers,
        )
        assert failing.status_code == 200
        result = failing.json()["results"][0]
        assert result["statuses"] == ["error", "present"]
        assert "unlucky" in result["errors"][0]
        metrics = http.get("/metrics").text
        assert 'featurestore_on_demand_failures_total{view="fragile@v1"} 1.0' in metrics


def test_lineage_shows_what_a_feature_is_computed_from(store: Any) -> None:
    from typer.testing import CliRunner

    from featurestore.cli import app

    repo = str(store.config.repo_path)
    shown = CliRunner().invoke(
        app, ["lineage", "feature", "amount_vs_avg:amount_ratio", "-r", repo]
    )
    assert shown.exit_code == 0, shown.output
    assert "computed at request time (python mode, function " in shown.output
    assert "user_stats@v1:avg_amount, user_stats@v1:txn_count, txn.amount (float64)" in shown.output
    model = CliRunner().invoke(app, ["lineage", "model", "fraud_model", "-r", repo, "--json"])
    import json

    served = {s["feature"]: s for s in json.loads(model.output)["serves"]}
    assert served["amount_vs_avg@v1:amount_ratio"]["on_demand"]["inputs"] == [
        "user_stats@v1:avg_amount",
        "user_stats@v1:txn_count",
    ]


def test_the_cli_shows_on_demand_views(store: Any) -> None:
    from typer.testing import CliRunner

    from featurestore.cli import app

    repo = str(store.config.repo_path)
    run = CliRunner()
    for args, expected in (
        (["describe", "amount_vs_avg"], "amount_ratio"),
        (["versions", "amount_vs_avg"], "v1"),
        (["list", "feature_view"], "amount_vs_avg"),
        (["resolve", "amount_vs_avg:is_large"], "amount_vs_avg@v1:is_large"),
        (["plan"], "No changes"),
    ):
        shown = run.invoke(app, [*args, "-r", repo])
        assert shown.exit_code == 0, (args, shown.output)
        assert expected in shown.output, (args, shown.output)


def test_hostile_request_values_are_refused_quickly(store: Any) -> None:
    nested: Any = []
    for _ in range(100_000):
        nested = [nested]
    for value in (nested, [1.0] * 1_000_000, "x" * 1_000_000, {"a": 1}, math.nan):
        row = {"user_id": 1, "amount": value}
        if isinstance(value, float):  # NaN is a float: the function decides
            got = store.get_online_features([row], model="fraud_model").to_dict()
            assert math.isnan(got["amount_ratio"][0])
            continue
        with pytest.raises(EntityInputError) as caught:
            store.get_online_features([row], model="fraud_model")
        assert len(str(caught.value)) < 400


def test_on_demand_views_take_no_pushes(store: Any) -> None:
    row = {"user_id": 1, "amount_ratio": 1.0, "is_large": False, "event_timestamp": NOW}
    with pytest.raises(OnDemandViewError, match="on-demand view"):
        store.push("amount_vs_avg", [row])
