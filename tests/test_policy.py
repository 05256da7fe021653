"""Policies: decisions, and their enforcement at plan, at online lookups and at training-set
builds (real Redis, real Parquet)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore, Model
from featurestore.definitions import FeatureMatch, ModelMatch, Policy
from featurestore.errors import PolicyDeniedError, RepoLoadError
from featurestore.online.catalog import Catalog
from featurestore.policy.engine import FeatureAttributes, decide, mask_value
from tests.helpers import replace_in_file, write_repo

_n = itertools.count()
UTC_US = pa.timestamp("us", tz="UTC")
NOW = datetime.now(UTC).replace(microsecond=0)

DEFS = """
from datetime import timedelta

from featurestore import (
    Entity, FeatureMatch, FeatureService, FeatureView, Field, Float64, Int64, Model,
    ModelMatch, ParquetSource, Policy, String,
)

user = Entity(name="user", join_key="user_id", dtype=Int64)
src = ParquetSource(name="src", path="data/src")
profile = FeatureView(
    name="profile",
    entities=[user],
    source=src,
    schema=[
        Field(name="email", dtype=String, tags={"pii": "true"}),
        Field(name="country", dtype=String),
        Field(name="score", dtype=Float64),
    ],
    ttl=timedelta(days=30),
    tags={"sensitivity": "high"},
)
fraud_features = FeatureService(name="fraud_features", features=[profile[["email", "score"]]])
promo_features = FeatureService(name="promo_features", features=[profile[["country", "score"]]])
fraud = Model(name="fraud", feature_services=[fraud_features], purpose="fraud", owner="risk")
promo = Model(name="promo", feature_services=[promo_features], purpose="marketing", owner="growth")

no_pii_for_marketing = Policy(
    name="no_pii_for_marketing",
    effect="deny",
    features=FeatureMatch(tags={"pii": "true"}),
    models=ModelMatch(purposes=["marketing"]),
    description="Marketing models never see personal data.",
)
fraud_joins_on_hashed_pii = Policy(
    name="fraud_joins_on_hashed_pii",
    effect="mask",
    mask="hash",
    features=FeatureMatch(tags={"pii": "true"}),
    models=ModelMatch(purposes=["fraud"]),
    description="Fraud models may join on personal data, never see it.",
)
"""


def test_deny_wins_then_mask_then_allow_then_the_default() -> None:
    feature = FeatureAttributes("profile", "email", {"pii": "true", "team": "risk"}, "data")
    model = Model(name="m", feature_services=["s"], purpose="marketing", owner="growth")
    allow = Policy(name="a_allow", effect="allow", features=FeatureMatch(tags={"team": "risk"}))
    mask = Policy(
        name="b_mask", effect="mask", mask="redact", features=FeatureMatch(views=["profile"])
    )
    deny = Policy(name="c_deny", effect="deny", models=ModelMatch(purposes=["marketing"]))
    other = Policy(name="d_other", effect="deny", models=ModelMatch(names=["someone_else"]))
    assert decide([allow, mask, deny], "allow", feature, model).rule == "c_deny"
    d = decide([allow, mask, other], "allow", feature, model)
    assert (d.effect, d.rule, d.mask) == ("mask", "b_mask", "redact")
    assert decide([allow, other], "deny", feature, model).rule == "a_allow"
    d = decide([other], "deny", feature, model)
    assert (d.effect, d.rule) == ("deny", None)
    assert "project's default" in d.because()
    # Between two rules of one effect, the first by name decides (not file order).
    twin = Policy(name="a_first", effect="deny", models=ModelMatch(purposes=["marketing"]))
    assert decide([deny, twin], "allow", feature, model).rule == "a_first"


def test_masks_are_keyed_hashes_or_nulls() -> None:
    a = mask_value("ann@example.com", "hash", b"k1")
    assert a == mask_value("ann@example.com", "hash", b"k1")  # joins like the raw value
    assert a != mask_value("bob@example.com", "hash", b"k1")
    assert a != mask_value("ann@example.com", "hash", b"k2")  # the key matters
    assert len(a) == 16
    assert "ann" not in a
    assert mask_value("x", "redact", b"k") is None
    assert mask_value(None, "hash", b"k") is None


def test_the_example_policy_fails_a_plan_that_gives_marketing_pii(example_repo: Path) -> None:
    replace_in_file(
        example_repo / "models.py",
        'user_profile[["age", "country", "account_age_days"]],',
        'user_profile[["age", "country", "account_age_days", "email"]],',
    )
    with FeatureStore(example_repo) as store, pytest.raises(RepoLoadError) as err:
        store.plan()
    text = str(err.value)
    assert "Model 'promo_ranker'" in text
    assert "user_profile:email" in text
    assert "policy 'no_pii_for_marketing'" in text
    assert "models.py:" in text


def policy_store(path: Path, redis_url: str, prefix: str) -> Iterator[FeatureStore]:
    """The repo of DEFS (fraud masks e-mail, marketing may not read it), applied, with two
    users' profiles online and offline."""
    config = (
        f"project: {prefix}{next(_n)}\nregistry: data/registry.db\n"
        f"online_store:\n  redis_url: {redis_url}\n"
    )
    repo = write_repo(path / "repo", {"featurestore.yaml": config, "defs.py": DEFS})
    with FeatureStore(repo) as s:
        s.apply()
        rows = pa.table(
            {
                "user_id": pa.array([1, 2], pa.int64()),
                "event_timestamp": pa.array([NOW - timedelta(hours=1)] * 2, UTC_US),
                "email": ["ann@example.com", None],
                "country": ["DE", "FR"],
                "score": [0.5, 0.7],
            }
        )
        s.write_online("profile", rows)
        s.offline_store().write(s.snapshot().feature_view("profile"), 1, rows)
        yield s


@pytest.fixture
def store(tmp_path: Path, services: Any) -> Iterator[FeatureStore]:
    yield from policy_store(tmp_path, services.redis_url, "pol")


def test_online_lookups_mask_what_a_policy_masks(store: FeatureStore) -> None:
    got = store.get_online_features([{"user_id": 1}, {"user_id": 2}], model="fraud").to_dict()
    key = store.mask_key()
    assert got["email"] == [mask_value("ann@example.com", "hash", key), None]
    assert got["score"] == [0.5, 0.7]  # no rule: the default, allow
    # In process, without a model or a key there is no caller to decide for.
    raw = store.get_online_features([{"user_id": 1}], features=["profile:email"]).to_dict()
    assert raw["email"] == ["ann@example.com"]


def test_a_default_of_deny_refuses_lookups_no_rule_allows(store: FeatureStore) -> None:
    catalog = Catalog(store.snapshot(), policy_default="deny", mask_key=b"k")
    with pytest.raises(PolicyDeniedError, match=r"Model 'fraud' may not use profile@v1:score"):
        catalog.plan(model="fraud")
    assert PolicyDeniedError.http_status == 403


def test_training_sets_for_a_model_are_masked_in_memory_and_on_disk(
    store: FeatureStore, tmp_path: Path
) -> None:
    spine = pa.table({"user_id": [1, 2], "event_timestamp": pa.array([NOW, NOW], UTC_US)})
    key = store.mask_key()
    table = store.get_training_data(spine, model="fraud").table
    assert table.column("email").to_pylist() == [mask_value("ann@example.com", "hash", key), None]
    assert table.column("score").to_pylist() == [0.5, 0.7]
    out = tmp_path / "train.parquet"
    store.get_training_data(spine, model="fraud", output_path=out)
    written = pq.read_table(out)
    assert written.column("email").to_pylist() == table.column("email").to_pylist()
    assert "ann@example.com" not in out.read_bytes().decode(errors="ignore")
    # Asked by feature list (no model), the build is not a model's: raw values.
    raw = store.get_training_data(spine, features=["profile:email"]).table
    assert raw.column("email").to_pylist() == ["ann@example.com", None]


def test_the_audit_log_records_applies_and_builds_and_catches_tampering(
    store: FeatureStore,
) -> None:
    from sqlalchemy import delete, update
    from typer.testing import CliRunner

    from featurestore.cli import app
    from featurestore.registry import schema as t

    spine = pa.table({"user_id": [1], "event_timestamp": pa.array([NOW], UTC_US)})
    store.get_training_data(spine, model="fraud")
    records = store.registry.audit.records(store.project)
    assert [r.action for r in records] == ["training_set", "apply"]  # newest first
    build = records[0]
    assert (build.subject, build.decision, build.detail["masked"]) == ("fraud", "mask", ["email"])
    assert build.rule == "fraud_joins_on_hashed_pii"
    assert store.registry.audit.records(store.project, decision="mask") == [build]
    assert store.registry.audit.verify(store.project).ok
    repo = str(store.config.repo_path)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--repo", repo])
    assert ok.exit_code == 0, ok.output
    assert "intact: 2 records" in ok.output
    listed = runner.invoke(app, ["audit", "--model", "fraud", "--repo", repo])
    assert "training_set" in listed.output
    assert "apply" not in listed.output

    with store.registry.database.engine.begin() as conn:  # an insider edits what was masked
        conn.execute(
            update(t.audit)
            .where(t.audit.c.seq == build.seq)
            .values(detail='{"masked": [], "features": [], "rows": 1, "training_set": 1}')
        )
    result = store.registry.audit.verify(store.project)
    assert result.problems == (f"record {build.seq} was changed after it was written",)
    with store.registry.database.engine.begin() as conn:  # ... or deletes the apply
        conn.execute(delete(t.audit).where(t.audit.c.seq == 1))
    problems = store.registry.audit.verify(store.project).problems
    assert "records 1..1 are missing (deleted?)" in problems
    bad = runner.invoke(app, ["audit", "verify", "--repo", repo])
    assert bad.exit_code == 1
    assert "tampered" in bad.output


def test_a_denied_training_set_build_is_refused_and_audited(store: FeatureStore) -> None:
    # The default turned to deny after apply: score (no rule) is now denied to fraud.
    config = store.config.repo_path / "featurestore.yaml"
    config.write_text(config.read_text() + "policy:\n  default: deny\n")
    spine = pa.table({"user_id": [1], "event_timestamp": pa.array([NOW], UTC_US)})
    with FeatureStore(store.config.repo_path) as strict:
        with pytest.raises(PolicyDeniedError, match=r"profile@v1:score: denied by the project"):
            strict.get_training_data(spine, model="fraud")
        (denial,) = strict.registry.audit.records(strict.project, action="deny")
    assert (denial.subject, denial.decision, denial.rule) == (
        "fraud profile@v1:score",
        "deny",
        "default",
    )
    assert store.registry.audit.verify(store.project).ok
