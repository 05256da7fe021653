"""Which edits make a new immutable view version, and how versions are pinned and retired."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from featurestore import FeatureStore
from featurestore.dtypes import Float32, Float64, Int64
from featurestore.errors import (
    ConflictError,
    FeatureNotFound,
    FeatureViewNotFound,
    RepoLoadError,
    VersionNotFound,
)
from featurestore.registry import Registry
from featurestore.registry.plan import Change, ChangeKind, Plan
from featurestore.registry.snapshot import ACTIVE, RETIRED
from featurestore.repo import load_repo
from tests.helpers import line_of, replace_once, write_repo

# A repo whose every versioned input can be edited by one unique text replacement.
REPO: dict[str, str] = {
    "entities.py": """
        from featurestore import Entity, Int64, String

        user = Entity(name="user", join_key="user_id", dtype=Int64)
        device = Entity(name="device", join_key="device_id", dtype=String)
        account = Entity(name="account", join_key="account_id", dtype=Int64)
    """,
    "sources.py": """
        from featurestore import Field, Float64, Int64, KafkaSource, ParquetSource, UnixTimestamp

        profiles = ParquetSource(name="profiles", path="data/profiles", timestamp_field="event_ts")
        payments = KafkaSource(
            name="payments",
            topic="payments",
            timestamp_field="ts",
            schema=[
                Field(name="account_id", dtype=Int64),
                Field(name="amount", dtype=Float64),
                Field(name="ts", dtype=UnixTimestamp),
            ],
        )
    """,
    "views.py": '''
        from datetime import timedelta

        from entities import account, device, user
        from sources import payments, profiles

        from featurestore import (
            Aggregation,
            FeatureView,
            Field,
            Float32,
            Float64,
            Int64,
            expect_between,
        )


        def scale(table):
            """Scale the raw score into [0, 1]."""
            # The raw score is in percent.
            return table.append_column("score", table["raw"])


        profile = FeatureView(
            name="profile",
            entities=[user],
            source=profiles,
            schema=[
                Field(name="score", dtype=Float32, description="risk score", tags={"pii": "no"}),
                Field(name="age", dtype=Int64),
            ],
            transformation=scale,
            ttl=timedelta(days=1),
            expectations=[expect_between("score", 0, 1)],
            online=True,
            owner="risk@example.com",
            description="Profile features.",
            tags={"team": "risk"},
        )

        spend = FeatureView(
            name="spend",
            entities=[account],
            source=payments,
            aggregations=[
                Aggregation(
                    function="sum", column="amount", window=timedelta(hours=1), name="amount_sum"
                ),
            ],
            ttl=timedelta(hours=6),
        )
    ''',
    "models.py": """
        from views import profile, spend

        from featurestore import FeatureService, Model

        scoring = FeatureService(name="scoring", features=[profile[["score"]], spend])
        scorer = Model(
            name="scorer", feature_services=[scoring], purpose="fraud", owner="ml@example.com"
        )
    """,
}


def edited(file: str, old: str, new: str) -> dict[str, str]:
    return replace_once(REPO, file, old, new)


class Case(NamedTuple):
    files: dict[str, str]
    view: str
    change: ChangeKind
    version: int  # the view's latest version after the edit
    feature: str  # a feature of v1, still readable as view@v1:feature afterwards
    v1_dtype: object


def new_version(files: dict[str, str], view: str = "profile", feature: str = "score") -> Case:
    v1_dtype = {"score": Float32, "age": Int64, "amount_sum": Float64}[feature]
    return Case(files, view, ChangeKind.NEW_VERSION, 2, feature, v1_dtype)


def same_version(files: dict[str, str], change: ChangeKind = ChangeKind.METADATA) -> Case:
    return Case(files, "profile", change, 1, "score", Float32)


CASES = {
    # -- what changes values: a new immutable version ------------------------------------
    "dtype": new_version(
        edited("views.py", 'name="score", dtype=Float32', 'name="score", dtype=Float64')
    ),
    "added feature": new_version(
        edited(
            "views.py",
            'Field(name="age", dtype=Int64),',
            'Field(name="age", dtype=Int64),\n        Field(name="tenure", dtype=Int64),',
        )
    ),
    "removed feature": new_version(
        edited("views.py", 'Field(name="age", dtype=Int64),', ""), feature="age"
    ),
    "renamed feature": new_version(
        edited(
            "views.py", 'Field(name="age", dtype=Int64),', 'Field(name="age_years", dtype=Int64),'
        ),
        feature="age",
    ),
    "source path": new_version(
        edited("sources.py", 'path="data/profiles"', 'path="data/profiles_v2"')
    ),
    "source timestamp_field": new_version(
        edited("sources.py", 'timestamp_field="event_ts"', 'timestamp_field="updated_at"')
    ),
    "entity join key": new_version(edited("entities.py", 'join_key="user_id"', 'join_key="uid"')),
    "entity dtype": new_version(
        edited("entities.py", 'join_key="user_id", dtype=Int64', 'join_key="user_id", dtype=String')
    ),
    "second entity": new_version(
        edited("views.py", "entities=[user],", "entities=[user, device],")
    ),
    "transformation logic": new_version(
        edited("views.py", 'table["raw"])', 'table["raw"].cast("float32"))')
    ),
    "aggregation window": new_version(
        edited("views.py", "window=timedelta(hours=1)", "window=timedelta(hours=2)"),
        view="spend",
        feature="amount_sum",
    ),
    # -- metadata: a new revision of the same version ------------------------------------
    "owner": same_version(
        edited("views.py", 'owner="risk@example.com"', 'owner="fraud@example.com"')
    ),
    "description": same_version(
        edited("views.py", 'description="Profile features."', 'description="User profile."')
    ),
    "tags": same_version(edited("views.py", 'tags={"team": "risk"}', 'tags={"team": "fraud"}')),
    "field description": same_version(
        edited("views.py", 'description="risk score"', 'description="calibrated risk score"')
    ),
    "field tags": same_version(edited("views.py", 'tags={"pii": "no"}', 'tags={"pii": "yes"}')),
    "ttl": same_version(edited("views.py", "ttl=timedelta(days=1)", "ttl=timedelta(days=2)")),
    "expectations": same_version(
        edited("views.py", 'expect_between("score", 0, 1)', 'expect_between("score", 0, 100)')
    ),
    "online flag": same_version(edited("views.py", "online=True", "online=False")),
    # -- no effect on values or metadata --------------------------------------------------
    "no edit": same_version(REPO, ChangeKind.UNCHANGED),
    "unrelated file": same_version(
        {**REPO, "notes.py": "# just a comment\nNOTE = 'not a definition'\n"}, ChangeKind.UNCHANGED
    ),
}
COSMETIC = {
    "transformation comment": edited(
        "views.py", "# The raw score is in percent.", "# The raw score is a percentage."
    ),
    "transformation docstring": edited(
        "views.py", '"""Scale the raw score into [0, 1]."""', '"""Scale the raw score."""'
    ),
    "transformation reformatted": edited(
        "views.py",
        'return table.append_column("score", table["raw"])',
        "return table.append_column(\n        'score',\n        table['raw'],\n    )",
    ),
}


def applied_base(tmp_path: Path) -> tuple[Path, Registry]:
    repo = write_repo(tmp_path / "repo", REPO)
    registry = Registry(f"sqlite:///{tmp_path}/reg.db")
    first = registry.apply(load_repo(repo))
    assert first.apply_id is not None
    assert first.serial == 1
    return repo, registry


def rewrite(repo: Path, files: dict[str, str]) -> None:
    """Overwrite the repo folder with the edited files (every file is rewritten)."""
    write_repo(repo, files)


def view_change(plan: Plan, view: str) -> Change:
    [change] = [c for c in plan.changes if c.kind == "feature_view" and c.name == view]
    return change


@pytest.mark.parametrize(
    "case",
    [
        *(pytest.param(case, id=name) for name, case in CASES.items()),
        *(
            pytest.param(same_version(files, ChangeKind.UNCHANGED), id=name)
            for name, files in COSMETIC.items()
        ),
    ],
)
def test_what_makes_a_new_version(tmp_path: Path, case: Case) -> None:
    repo, registry = applied_base(tmp_path)
    rewrite(repo, case.files)

    change = view_change(registry.plan(load_repo(repo)), case.view)
    assert change.change == case.change
    assert change.version == case.version
    if case.change == ChangeKind.NEW_VERSION:
        assert change.old_version == 1
        assert change.summary().startswith(
            f"FeatureView {case.view}: new version v2 (v1 stays served)"
        )
    else:
        assert change.old_version is None

    result = registry.apply(load_repo(repo))
    snapshot = registry.snapshot("demo")
    assert sorted(snapshot.versions[case.view]) == list(range(1, case.version + 1))
    assert snapshot.latest_version(case.view) == case.version
    assert result.serial == (1 if case.change == ChangeKind.UNCHANGED else 2)
    # v1 is immutable and still served, with v1's type.
    old = snapshot.resolve(f"{case.view}@v1:{case.feature}")
    assert (old.version, old.dtype) == (1, case.v1_dtype)
    # Only the edited view moved.
    other = "spend" if case.view == "profile" else "profile"
    assert sorted(snapshot.versions[other]) == [1]


@pytest.mark.parametrize("files", COSMETIC.values(), ids=COSMETIC.keys())
def test_cosmetic_transformation_edits_keep_the_version(tmp_path: Path, files) -> None:
    repo, registry = applied_base(tmp_path)
    rewrite(repo, files)
    change = view_change(registry.plan(load_repo(repo)), "profile")
    assert change.change != ChangeKind.NEW_VERSION
    assert change.version == 1
    registry.apply(load_repo(repo))
    snapshot = registry.snapshot("demo")
    assert sorted(snapshot.versions["profile"]) == [1]
    assert snapshot.resolve("profile:score").version == 1


def test_new_version_details_what_changed(tmp_path: Path) -> None:
    repo, registry = applied_base(tmp_path)
    rewrite(repo, CASES["dtype"].files)
    change = view_change(registry.plan(load_repo(repo)), "profile")
    assert [(f.path, f.old, f.new) for f in change.fields] == [
        ("schema.score", "float32", "float64")
    ]
    assert change.summary() == (
        "FeatureView profile: new version v2 (v1 stays served) — score float32 -> float64"
    )
    registry.apply(load_repo(repo))
    snapshot = registry.snapshot("demo")
    latest = snapshot.resolve("profile:score")
    assert (latest.version, latest.dtype) == (2, Float64)
    # Each version keeps its own definition.
    assert snapshot.feature_view("profile", 1).field("score").dtype == Float32
    assert snapshot.feature_view("profile", 2).field("score").dtype == Float64


def test_metadata_change_records_a_revision_of_the_same_version(tmp_path: Path) -> None:
    repo, registry = applied_base(tmp_path)
    rewrite(repo, CASES["owner"].files)
    registry.apply(load_repo(repo))
    history = registry.history("demo", "feature_view", "profile")
    assert [(r.revision, r.version, r.spec["owner"]) for r in history] == [
        (1, 1, "risk@example.com"),
        (2, 1, "fraud@example.com"),
    ]
    # The version row carries the latest metadata.
    assert registry.snapshot("demo").versions["profile"][1].spec["owner"] == "fraud@example.com"


def test_applying_twice_creates_nothing(tmp_path: Path) -> None:
    repo, registry = applied_base(tmp_path)
    before = registry.history("demo", "feature_view", "profile")
    again = registry.apply(load_repo(repo))
    assert again.apply_id is None
    assert again.serial == 1
    assert not again.plan.has_changes
    assert {c.change for c in again.plan.changes} == {ChangeKind.UNCHANGED}
    assert registry.serial("demo") == 1
    assert registry.history("demo", "feature_view", "profile") == before


# The 'profile' view and its users removed (the view's keyword arguments stay as a plain dict).
WITHOUT_PROFILE = replace_once(
    replace_once(
        edited("models.py", 'features=[profile[["score"]], spend]', "features=[spend]"),
        "models.py",
        "from views import profile, spend",
        "from views import spend",
    ),
    "views.py",
    "profile = FeatureView(",
    "_profile = dict(",
)


def test_removed_view_is_retired_and_an_identical_one_reactivates_it(tmp_path: Path) -> None:
    repo, registry = applied_base(tmp_path)
    rewrite(repo, WITHOUT_PROFILE)

    plan = registry.plan(load_repo(repo))
    change = view_change(plan, "profile")
    assert (change.change, change.version) == (ChangeKind.RETIRE, 1)
    assert change.summary() == "FeatureView profile: retired (removed from the repo; data kept)"
    registry.apply(load_repo(repo))

    snapshot = registry.snapshot("demo")
    with pytest.raises(FeatureViewNotFound) as info:
        snapshot.resolve("profile:score")
    assert "Unknown feature view 'profile' in project 'demo'. It was retired" in str(info.value)
    assert snapshot.versions["profile"][1].status == ACTIVE  # data kept, ready to reactivate

    rewrite(repo, REPO)
    plan = registry.plan(load_repo(repo))
    change = view_change(plan, "profile")
    assert (change.change, change.version) == (ChangeKind.NEW, 1)
    assert change.notes == ("reactivates v1 (same definition)",)
    registry.apply(load_repo(repo))
    snapshot = registry.snapshot("demo")
    assert sorted(snapshot.versions["profile"]) == [1]
    assert snapshot.resolve("profile:score").version == 1
    assert snapshot.model_pins("scorer") == {"profile": 1, "spend": 1}


def test_removed_view_is_not_served_through_a_pinned_reference(tmp_path: Path) -> None:
    repo, registry = applied_base(tmp_path)
    rewrite(repo, WITHOUT_PROFILE)
    registry.apply(load_repo(repo))
    with pytest.raises(FeatureViewNotFound, match="retired"):
        registry.snapshot("demo").resolve("profile@v1:score")


def test_readded_view_with_a_new_definition_gets_the_next_version(tmp_path: Path) -> None:
    repo, registry = applied_base(tmp_path)
    rewrite(repo, WITHOUT_PROFILE)
    registry.apply(load_repo(repo))
    rewrite(repo, CASES["dtype"].files)
    change = view_change(registry.plan(load_repo(repo)), "profile")
    assert (change.change, change.version) == (ChangeKind.NEW, 2)
    registry.apply(load_repo(repo))
    assert sorted(registry.snapshot("demo").versions["profile"]) == [1, 2]


def test_model_stays_pinned_until_promoted(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", REPO)
    store = FeatureStore(repo)
    store.apply()
    rewrite(repo, CASES["dtype"].files)

    plan = store.plan()
    [model] = [c for c in plan.changes if c.kind == "model"]
    assert model.change == ChangeKind.UNCHANGED
    assert model.notes == (
        "stays pinned to profile@v1 (v2 available); run `featurestore promote scorer` to move "
        "it once the new versions are materialized",
    )
    store.apply()
    snapshot = store.snapshot()
    assert snapshot.model_pins("scorer") == {"profile": 1, "spend": 1}
    assert [(str(r), r.dtype) for r in snapshot.resolve_model("scorer")] == [
        ("profile@v1:score", Float32),
        ("spend@v1:amount_sum", Float64),
    ]
    # Unpinned readers get the latest.
    assert [str(r) for r in store.resolve(["scoring"])] == [
        "profile@v2:score",
        "spend@v1:amount_sum",
    ]

    assert store.promote("scorer") == {"profile": 2, "spend": 1}
    snapshot = store.snapshot()
    assert [(str(r), r.dtype) for r in snapshot.resolve_model("scorer")] == [
        ("profile@v2:score", Float64),
        ("spend@v1:amount_sum", Float64),
    ]
    # Promoting again changes nothing.
    serial = store.registry.serial("demo")
    assert store.promote("scorer") == {"profile": 2, "spend": 1}
    assert store.registry.serial("demo") == serial
    store.close()


def test_changing_the_model_moves_it_to_the_latest_versions(tmp_path: Path) -> None:
    repo, registry = applied_base(tmp_path)
    files = replace_once(CASES["dtype"].files, "models.py", 'owner="ml@example.com"', 'owner="ml2"')
    rewrite(repo, files)
    [model] = [c for c in registry.plan(load_repo(repo)).changes if c.kind == "model"]
    assert model.change == ChangeKind.METADATA
    assert [(f.path, f.old, f.new) for f in model.fields] == [
        ("owner", "ml@example.com", "ml2"),
        ("pins.profile", 1, 2),
    ]
    registry.apply(load_repo(repo))
    assert registry.snapshot("demo").model_pins("scorer") == {"profile": 2, "spend": 1}


PINNED_SERVICE = """
    from featurestore import FeatureService, Model

    legacy = FeatureService(name="legacy", features=["profile@v1:score", "spend:amount_sum"])
    legacy_model = Model(
        name="legacy_model", feature_services=[legacy], purpose="fraud", owner="me"
    )
"""


def test_service_pinning_v1_keeps_reading_v1(tmp_path: Path) -> None:
    # The pin names the version the same apply creates.
    repo = write_repo(tmp_path / "repo", {**REPO, "legacy.py": PINNED_SERVICE})
    registry = Registry(f"sqlite:///{tmp_path}/reg.db")
    registry.apply(load_repo(repo))
    rewrite(repo, {**CASES["dtype"].files, "legacy.py": PINNED_SERVICE})
    registry.apply(load_repo(repo))

    snapshot = registry.snapshot("demo")
    assert snapshot.latest_version("profile") == 2
    assert [(str(r), r.dtype) for r in snapshot.resolve_all(["legacy"])] == [
        ("profile@v1:score", Float32),
        ("spend@v1:amount_sum", Float64),
    ]
    registry.promote("demo", "legacy_model")
    # An explicit pin in the service wins over the model's pins.
    assert [str(r) for r in registry.snapshot("demo").resolve_model("legacy_model")] == [
        "profile@v1:score",
        "spend@v1:amount_sum",
    ]


def test_service_pinning_a_missing_version_fails_the_plan(tmp_path: Path) -> None:
    repo, registry = applied_base(tmp_path)
    bad = PINNED_SERVICE.replace("profile@v1:score", "profile@v9:score")
    rewrite(repo, {**REPO, "legacy.py": bad})
    with pytest.raises(RepoLoadError) as info:
        registry.plan(load_repo(repo))
    [problem] = info.value.problems
    assert problem.message == (
        "FeatureService 'legacy' refers to 'profile@v9:score': Feature view 'profile' has no "
        "version v9 (it has: v1). Use one of those or 'profile:feature' for the latest."
    )
    assert (problem.file, problem.line) == ("legacy.py", line_of(repo / "legacy.py", "legacy = "))
    # Nothing was written.
    assert registry.serial("demo") == 1


def test_pin_to_a_missing_version_on_the_first_apply_names_the_version(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo", {**REPO, "legacy.py": PINNED_SERVICE.replace("@v1", "@v9")}
    )
    registry = Registry(f"sqlite:///{tmp_path}/reg.db")
    with pytest.raises(RepoLoadError) as info:
        registry.plan(load_repo(repo))
    [problem] = info.value.problems
    assert "has no version v9" in problem.message


def test_retire_version_is_refused_while_a_model_is_pinned(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", REPO)
    store = FeatureStore(repo)
    store.apply()
    rewrite(repo, CASES["dtype"].files)
    store.apply()
    serial = store.registry.serial("demo")

    with pytest.raises(ConflictError) as info:
        store.retire("profile", 1, remove_online=False)
    assert info.value.http_status == 409
    assert str(info.value) == (
        "profile@v1 is still used by model(s) scorer. Promote them "
        "(`featurestore promote MODEL`) to a newer version first."
    )
    assert store.registry.serial("demo") == serial
    assert store.snapshot().versions["profile"][1].status == ACTIVE

    # The latest version cannot be retired this way.
    with pytest.raises(ConflictError, match="profile@v2 is the latest version of 'profile'"):
        store.retire("profile", 2, remove_online=False)

    store.promote("scorer")
    retired = store.retire("profile", 1, remove_online=False)  # online: test_online_store
    assert (retired.label, retired.status) == ("profile@v1", RETIRED)
    assert retired.retired_at is not None

    snapshot = store.snapshot()
    with pytest.raises(VersionNotFound) as info:
        snapshot.resolve("profile@v1:score")
    assert str(info.value) == (
        "profile@v1 was retired and is no longer served. Active versions: v2."
    )
    assert snapshot.resolve("profile:score").version == 2
    assert [v.status for v in store.versions("profile")] == [RETIRED, ACTIVE]
    # Retiring it again says so.
    with pytest.raises(VersionNotFound, match="retired"):
        store.retire("profile", 1, remove_online=False)
    store.close()


def test_feature_only_in_an_old_version_hints_at_the_pin(tmp_path: Path) -> None:
    repo, registry = applied_base(tmp_path)
    rewrite(repo, CASES["renamed feature"].files)
    registry.apply(load_repo(repo))
    with pytest.raises(FeatureNotFound) as info:
        registry.snapshot("demo").resolve("profile:age")
    assert str(info.value) == (
        "Feature view profile@v2 has no feature 'age'. It exists in v1: pin it as 'profile@v1:age'."
    )


def test_model_moves_to_the_version_that_has_a_feature_its_service_now_lists(
    tmp_path: Path,
) -> None:
    """A service taking a whole view lists a feature only v2 has: v1 cannot serve the model any
    more, so the plan moves the model to v2 and says why, while other pins stay."""
    repo, registry = applied_base(tmp_path)  # 'scoring' takes all of 'spend'
    files = edited(
        "views.py",
        'name="amount_sum"\n        ),',
        'name="amount_sum"\n        ),\n'
        '        Aggregation(function="count", window=timedelta(hours=1)),',
    )
    rewrite(repo, files)
    plan = registry.plan(load_repo(repo))
    [model] = [c for c in plan.changes if c.kind == "model" and c.name == "scorer"]
    assert model.change == ChangeKind.REPIN
    assert model.notes == (
        "moves to spend@v2: its services now read count_1h, which spend@v1 does not have",
    )
    registry.apply(load_repo(repo))
    snapshot = registry.snapshot("demo")
    assert snapshot.model_pins("scorer") == {"profile": 1, "spend": 2}
    assert [str(r) for r in snapshot.resolve_model("scorer")] == [
        "profile@v1:score",
        "spend@v2:amount_sum",
        "spend@v2:count_1h",
    ]
