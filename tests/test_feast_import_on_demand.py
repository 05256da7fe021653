"""`import-feast` on a Feast repo in the style of its tutorials: two batch views, on-demand
views (pandas and python mode) combining them with a request field, names with spaces and
a push source. The import has nothing "not converted"; training sets and online values
equal Feast's for the same data, row for row."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.materialize.backfill import backfill
from featurestore.migrate.feast import import_feast
from tests.test_feast_import import feast_repo_at

pytest.importorskip("feast")
FEAST = str(Path(sys.executable).parent / "feast")
UTC_US = pa.timestamp("us", tz="UTC")
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=62)  # recent: within TTL online

TUTORIAL = '''
from datetime import timedelta

import pandas as pd
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
from feast.types import Float64, Int64

person = Entity(name="person", join_keys=["person_id"], value_type=ValueType.INT64)
history = FileSource(
    name="Credit history", path="data/history.parquet", timestamp_field="event_timestamp"
)
history_push = PushSource(name="credit history push", batch_source=history)
incomes = FileSource(
    name="income records", path="data/income.parquet", timestamp_field="event_timestamp"
)
credit_history = FeatureView(
    name="credit_history",
    entities=[person],
    ttl=timedelta(days=30),
    schema=[Field(name="total_debt", dtype=Float64), Field(name="missed_payments", dtype=Int64)],
    source=history_push,
)
income = FeatureView(
    name="income",
    entities=[person],
    ttl=timedelta(days=400),
    schema=[Field(name="yearly_income", dtype=Float64)],
    source=incomes,
)
loan_request = RequestSource(
    name="loan request", schema=[Field(name="loan_amount", dtype=Float64)]
)

@on_demand_feature_view(
    sources=[credit_history, income, loan_request],
    schema=[
        Field(name="debt_with_loan", dtype=Float64),
        Field(name="debt_to_income", dtype=Float64),
    ],
    mode="pandas",
)
def loan_risk(inputs: pd.DataFrame) -> pd.DataFrame:
    """Debt after the requested loan, and against income."""
    out = pd.DataFrame()
    out["debt_with_loan"] = inputs["total_debt"] + inputs["loan_amount"]
    out["debt_to_income"] = out["debt_with_loan"] / inputs["yearly_income"]
    return out


@on_demand_feature_view(
    sources=[credit_history[["total_debt"]], loan_request],
    schema=[Field(name="loan_share", dtype=Float64)],
    mode="python",
)
def loan_share(inputs: dict) -> dict:
    return {
        "loan_share": [
            amount / (debt + amount) if debt is not None and debt + amount else None
            for debt, amount in zip(inputs["total_debt"], inputs["loan_amount"])
        ]
    }


scoring = FeatureService(name="credit scoring", features=[credit_history, income, loan_risk])
'''
REFS = [
    "credit_history:total_debt",
    "credit_history:missed_payments",
    "income:yearly_income",
    "loan_risk:debt_with_loan",
    "loan_risk:debt_to_income",
    "loan_share:loan_share",
]


def write_data(repo: Path) -> None:
    rng = random.Random(11)
    history, income = [], []
    for person in range(1, 21):
        for day in range(0, 60, 7):
            history.append(
                {
                    "person_id": person,
                    "total_debt": round(rng.uniform(0, 5000), 2),
                    "missed_payments": rng.randint(0, 4),
                    "event_timestamp": BASE + timedelta(days=day, hours=person),
                }
            )
        if person != 7:  # person 7 has no income record: nulls through the functions
            income.append(
                {
                    "person_id": person,
                    "yearly_income": float(rng.randint(20, 90) * 1000),
                    "event_timestamp": BASE - timedelta(days=1),
                }
            )
    history_schema = pa.schema(
        [
            ("person_id", pa.int64()),
            ("total_debt", pa.float64()),
            ("missed_payments", pa.int64()),
            ("event_timestamp", UTC_US),
        ]
    )
    income_schema = pa.schema(
        [("person_id", pa.int64()), ("yearly_income", pa.float64()), ("event_timestamp", UTC_US)]
    )
    pq.write_table(pa.Table.from_pylist(history, history_schema), repo / "data/history.parquet")
    pq.write_table(pa.Table.from_pylist(income, income_schema), repo / "data/income.parquet")


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory, services: Any) -> tuple[Path, Path, Any]:
    root = tmp_path_factory.mktemp("feast_od")
    feast_repo = feast_repo_at(root / "feast", "credit", TUTORIAL)
    write_data(feast_repo)
    out = root / "imported"
    report = import_feast(feast_repo, out)
    config = (out / "featurestore.yaml").read_text()
    (out / "featurestore.yaml").write_text(
        config + f"online_store:\n  redis_url: {services.redis_url}\n"
    )
    return feast_repo, out, report


def test_the_import_converts_everything(repos: tuple[Path, Path, Any]) -> None:
    _feast, out, report = repos
    assert report.skipped == []
    kinds = {(k, n) for k, n in report.converted}
    assert ("OnDemandFeatureView", "loan_risk") in kinds
    assert ("OnDemandFeatureView", "loan_share") in kinds
    assert ("RequestSource", "loan request") in kinds
    notes = "\n".join(report.notes)
    assert "`loan request` is named `loan_request`" in notes
    assert "`Credit history` is named `Credit_history`" in notes
    assert "push source `credit history push`" in notes
    text = (out / "feast_imported.py").read_text()
    assert "import pandas as pd" in text
    assert "from feast" not in text
    assert 'description="Debt after the requested loan, and against income."' in text
    with FeatureStore(out) as store:
        store.apply()
        snapshot = store.snapshot()
        risk = snapshot.on_demand_view("loan_risk")
        assert risk.mode == "pandas"
        assert [vi.view for vi in risk.inputs] == ["credit_history", "income"]
        share = snapshot.on_demand_view("loan_share")
        assert share.mode == "python"
        assert share.singleton is False  # Feast's python mode hands the function columns
        assert snapshot.head("feature_view", "credit_history").spec["tags"] == {
            "feast_push_source": "credit history push"
        }
        assert [f.feature for f in snapshot.resolve_all(["credit_scoring"])] == [
            "total_debt",
            "missed_payments",
            "yearly_income",
            "debt_with_loan",
            "debt_to_income",
        ]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    return a == b


def _nulls(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def test_training_sets_equal_feasts_row_for_row(repos: tuple[Path, Path, Any]) -> None:
    from feast import FeatureStore as FeastStore

    feast_repo, out, _report = repos
    rng = random.Random(5)
    rows = [
        {
            "row_id": i,
            "person_id": rng.randint(1, 20),
            "loan_amount": float(rng.choice([0, 250, 1000, 20_000])),
            "event_timestamp": BASE + timedelta(days=rng.randint(2, 59), minutes=i),
        }
        for i in range(120)
    ]
    schema = pa.schema(
        [
            ("row_id", pa.int64()),
            ("person_id", pa.int64()),
            ("loan_amount", pa.float64()),
            ("event_timestamp", UTC_US),
        ]
    )
    entities = pa.Table.from_pylist(rows, schema)
    subprocess.run([FEAST, "apply"], cwd=feast_repo, check=True, capture_output=True)
    theirs = (
        FeastStore(repo_path=str(feast_repo))
        .get_historical_features(entity_df=entities.to_pandas(), features=REFS)
        .to_arrow()
    )
    with FeatureStore(out) as store:
        store.apply()
        backfill(store)
        ours = store.get_training_data(entities, features=REFS).table
    columns = [r.split(":")[1] for r in REFS]
    mine = {r["row_id"]: r for r in ours.to_pylist()}
    feast = {r["row_id"]: r for r in theirs.to_pylist()}
    assert set(mine) == set(feast) == set(range(120))
    differing = [
        (i, c, mine[i][c], feast[i][c])
        for i in mine
        for c in columns
        if not _same(_nulls(mine[i][c]), _nulls(feast[i][c]))
    ]
    assert differing == []
    assert any(mine[i]["debt_to_income"] is None for i in mine)  # person 7: no income
    assert ours.schema.field("loan_share").type == pa.float64()


def test_online_values_equal_feasts(repos: tuple[Path, Path, Any]) -> None:
    from feast import FeatureStore as FeastStore

    feast_repo, out, _report = repos
    end = BASE + timedelta(days=61)  # the online values are the latest rows, within TTL
    subprocess.run([FEAST, "apply"], cwd=feast_repo, check=True, capture_output=True)
    subprocess.run(
        [FEAST, "materialize", (BASE - timedelta(days=2)).isoformat(), end.isoformat()],
        cwd=feast_repo,
        check=True,
        capture_output=True,
    )
    rows = [{"person_id": p, "loan_amount": a} for p, a in ((1, 500.0), (7, 100.0), (12, 0.0))]
    rows.append({"person_id": 99, "loan_amount": 10.0})  # unknown person
    theirs = (
        FeastStore(repo_path=str(feast_repo))
        .get_online_features(features=REFS, entity_rows=rows)
        .to_dict()
    )
    with FeatureStore(out) as store:
        store.apply()
        backfill(store, online=True)
        ours = store.get_online_features(rows, features=REFS).to_dict()
    for ref in REFS:
        name = ref.split(":")[1]
        got = [_nulls(v) for v in ours[name]]
        want = [_nulls(v) for v in theirs[name]]
        assert all(_same(a, b) for a, b in zip(got, want, strict=True)), (name, got, want)
