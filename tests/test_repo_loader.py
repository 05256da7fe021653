"""The repo loader: every problem reported at once, each at the file and line it is about."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurestore.config import load_config
from featurestore.errors import Problem, RepoConfigError, RepoLoadError
from featurestore.repo import load_repo
from tests.helpers import BASE_REPO, line_of, replace_once, write_repo

# A minimal, valid single-file repo the error cases below extend.
HEADER = """
    from datetime import timedelta

    from featurestore import (
        DriftMonitor,
        Entity,
        FeatureMatch,
        FeatureService,
        FeatureView,
        Field,
        Float64,
        Int64,
        Model,
        ParquetSource,
        Policy,
    )

    user = Entity(name="user", join_key="user_id", dtype=Int64)
    src = ParquetSource(name="src", path="data/src")
    stats = FeatureView(
        name="stats",
        entities=[user],
        source=src,
        schema=[Field(name="clicks", dtype=Int64), Field(name="spend", dtype=Float64)],
        ttl=timedelta(days=1),
    )
"""


def load_problems(repo: Path) -> list[Problem]:
    with pytest.raises(RepoLoadError) as info:
        load_repo(repo)
    return info.value.problems


def only_problem(repo: Path) -> Problem:
    problems = load_problems(repo)
    assert len(problems) == 1, problems
    return problems[0]


# -- the base repo ------------------------------------------------------------------


def test_base_repo_loads_with_cross_file_imports(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", BASE_REPO)
    contents = load_repo(repo)

    assert {kind: sorted(objs) for kind, objs in contents.objects.items()} == {
        "entity": ["merchant", "user"],
        "source": ["merchant_source", "user_source"],
        "feature_view": ["merchant_stats", "user_stats"],
        "feature_service": ["fraud_features", "promo_features"],
        "model": ["fraud_model", "promo_model"],
        "policy": ["no_pii_for_marketing"],
        "drift_monitor": ["fraud_drift"],
    }
    # Imported names are the same objects, not duplicates, and views are resolved.
    view = contents.feature_views["user_stats"]
    assert view.entities == (contents.entities["user"],)
    assert view.source == contents.sources["user_source"]
    assert view.join_keys == ["user_id"]
    # Each definition remembers where it was written, not where it was imported.
    user = contents.entities["user"]
    assert Path(user.location.file) == repo / "entities.py"
    assert user.location.line == line_of(repo / "entities.py", 'Entity(name="user"')
    service = contents.feature_services["promo_features"]
    assert service.references == ("user_stats:avg_amount", "user_stats:txn_count")
    assert Path(service.location.file) == repo / "models.py"


def test_files_importing_each_other_in_subfolders(tmp_path: Path) -> None:
    files = {
        "common/__init__.py": "",
        "common/keys.py": """
            from featurestore import Entity, Int64

            user = Entity(name="user", join_key="user_id", dtype=Int64)
        """,
        "a_views.py": """
            from common.keys import user
            from z_sources import src

            from featurestore import FeatureView, Field, Float64

            stats = FeatureView(
                name="stats", entities=[user], source=src, schema=[Field(name="x", dtype=Float64)]
            )
        """,
        "z_sources.py": """
            from featurestore import ParquetSource

            src = ParquetSource(name="src", path="data/src")
        """,
    }
    repo = write_repo(tmp_path / "repo", files)
    contents = load_repo(repo)
    assert sorted(contents.entities) == ["user"]
    assert sorted(contents.sources) == ["src"]
    assert contents.feature_views["stats"].entities == (contents.entities["user"],)


# -- definition problems ------------------------------------------------------------


def test_duplicate_name_in_two_files_names_the_other_location(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "a_entities.py": """
                from featurestore import Entity, Int64

                # the first definition
                user = Entity(name="user", join_key="user_id", dtype=Int64)
            """,
            "b_entities.py": """
                from featurestore import Entity, Int64

                # A second user entity, written by someone else
                # who did not know about the first one.
                customer = Entity(name="user", join_key="customer_id", dtype=Int64)
            """,
        },
    )
    first = line_of(repo / "a_entities.py", "Entity(name=")
    second = line_of(repo / "b_entities.py", "Entity(name=")
    assert first != second  # so the message cannot name the wrong one by accident

    problem = only_problem(repo)

    assert problem.message == (
        f"Duplicate Entity name 'user' (also defined at a_entities.py:{first}). "
        "Names must be unique per kind within a project; rename one of them."
    )
    assert (problem.file, problem.line) == ("b_entities.py", second)


def test_identical_duplicate_definitions_in_two_files_are_still_duplicates(
    tmp_path: Path,
) -> None:
    same = """
        from featurestore import ParquetSource

        src = ParquetSource(name="src", path="data/src")
    """
    repo = write_repo(tmp_path / "repo", {"one.py": same, "two.py": "\n" + same})
    problem = only_problem(repo)
    assert problem.message.startswith("Duplicate ParquetSource name 'src' (also defined at one.py:")
    assert (problem.file, problem.line) == ("two.py", line_of(repo / "two.py", "ParquetSource("))


def test_unknown_entity_by_name(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "defs.py": HEADER
            + """
    typo = FeatureView(
        name="typo",
        entities=["usr"],
        source="src",
        schema=[Field(name="x", dtype=Float64)],
    )
"""
        },
    )
    problem = only_problem(repo)
    assert (
        problem.message == "FeatureView 'typo' refers to unknown entity 'usr'. Did you mean 'user'?"
    )
    assert (problem.file, problem.line) == ("defs.py", line_of(repo / "defs.py", "typo = "))


def test_unknown_source_by_name(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "defs.py": HEADER
            + """
    other = FeatureView(
        name="other",
        entities=["user"],
        source="srcs",
        schema=[Field(name="x", dtype=Float64)],
    )
"""
        },
    )
    problem = only_problem(repo)
    assert (
        problem.message
        == "FeatureView 'other' refers to unknown source 'srcs'. Did you mean 'src'?"
    )
    assert (problem.file, problem.line) == ("defs.py", line_of(repo / "defs.py", "other = "))


def test_entities_and_source_given_by_name_are_resolved(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "defs.py": HEADER
            + """
    other = FeatureView(
        name="other", entities=["user"], source="src", schema=[Field(name="x", dtype=Float64)]
    )
"""
        },
    )
    contents = load_repo(repo)
    other = contents.feature_views["other"]
    assert other.entities == (contents.entities["user"],)
    assert other.source == contents.sources["src"]


def test_service_referring_to_missing_view(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "defs.py": HEADER
            + """
    svc = FeatureService(name="svc", features=["stat:clicks"])
"""
        },
    )
    problem = only_problem(repo)
    assert problem.message == (
        "FeatureService 'svc' refers to 'stat:clicks', but there is no feature view 'stat'. "
        "Did you mean 'stats'?"
    )
    assert (problem.file, problem.line) == ("defs.py", line_of(repo / "defs.py", "svc = "))


def test_service_referring_to_missing_feature(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "defs.py": HEADER
            + """
    svc = FeatureService(
        name="svc",
        features=["stats:spend", "stats:click"],
    )
"""
        },
    )
    problem = only_problem(repo)
    assert problem.message == (
        "FeatureService 'svc' refers to 'stats:click', but view 'stats' has no feature 'click'. "
        "Did you mean 'clicks'?"
    )
    assert (problem.file, problem.line) == ("defs.py", line_of(repo / "defs.py", "svc = "))


def test_model_consuming_unknown_service(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "defs.py": HEADER
            + """
    stats_svc = FeatureService(name="stats_svc", features=[stats])
    model = Model(
        name="model", feature_services=["stats_svcs"], purpose="fraud", owner="me@example.com"
    )
"""
        },
    )
    problem = only_problem(repo)
    assert problem.message == (
        "Model 'model' consumes unknown feature service 'stats_svcs'. Did you mean 'stats_svc'?"
    )
    assert (problem.file, problem.line) == ("defs.py", line_of(repo / "defs.py", "model = "))


def test_drift_monitor_watching_a_feature_its_model_does_not_consume(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "defs.py": HEADER
            + """
    spend_svc = FeatureService(name="spend_svc", features=[stats[["spend"]]])
    model = Model(name="model", feature_services=[spend_svc], purpose="ads", owner="me")
    monitor = DriftMonitor(name="monitor", model=model, features=["stats:spend", "stats:clicks"])
    typo = DriftMonitor(name="typo", model="model", features=["stats:spnd"])
"""
        },
    )
    problems = load_problems(repo)
    assert [(p.message, p.file, p.line) for p in problems] == [
        (
            # The suggestion is the closest feature the model does consume.
            "DriftMonitor 'monitor' watches 'stats:clicks', which model 'model' does not consume. "
            "Did you mean 'stats:spend'? The model reads the services spend_svc; watch one of "
            "their features or add it to a service.",
            "defs.py",
            line_of(repo / "defs.py", "monitor = "),
        ),
        (
            "DriftMonitor 'typo' watches 'stats:spnd', which model 'model' does not consume. "
            "Did you mean 'stats:spend'? The model reads the services spend_svc; watch one of "
            "their features or add it to a service.",
            "defs.py",
            line_of(repo / "defs.py", "typo = "),
        ),
    ]


def test_drift_monitor_of_unknown_model(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "defs.py": HEADER
            + """
    svc = FeatureService(name="svc", features=[stats])
    model = Model(name="model", feature_services=[svc], purpose="ads", owner="me")
    monitor = DriftMonitor(name="monitor", model="modle")
"""
        },
    )
    problem = only_problem(repo)
    assert (
        problem.message
        == "DriftMonitor 'monitor' watches unknown model 'modle'. Did you mean 'model'?"
    )
    assert (problem.file, problem.line) == ("defs.py", line_of(repo / "defs.py", "monitor = "))


def test_policy_naming_unknown_view(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "governance.py": """
                from featurestore import FeatureMatch, Policy

                # Policies may live apart from the views they name.
                deny_stats = Policy(
                    name="deny_stats",
                    effect="deny",
                    features=FeatureMatch(views=["stat"]),
                )
            """,
            "defs.py": HEADER,
        },
    )
    problem = only_problem(repo)
    assert (
        problem.message
        == "Policy 'deny_stats' names unknown feature view 'stat'. Did you mean 'stats'?"
    )
    assert (problem.file, problem.line) == (
        "governance.py",
        line_of(repo / "governance.py", "deny_stats = "),
    )


def test_bad_dtype_points_at_the_field(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "defs.py": HEADER
            + """
    other = FeatureView(
        name="other",
        entities=[user],
        source=src,
        schema=[
            Field(name="ok", dtype=Float64),
            Field(name="amount", dtype="flaot64"),
        ],
    )
"""
        },
    )
    problem = only_problem(repo)
    assert problem.message == (
        "Field 'amount': dtype: unknown dtype 'flaot64'. Did you mean 'float64'? "
        "Supported: int32, int64, float32, float64, string, bytes, bool, timestamp, array<float32>."
    )
    assert (problem.file, problem.line) == ("defs.py", line_of(repo / "defs.py", '"flaot64"'))


def test_definition_error_in_constructor_points_at_the_call(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "defs.py": HEADER
            + """
    svc = FeatureService(name="svc", features=[])
"""
        },
    )
    problem = only_problem(repo)
    # FeatureStoreErrors are shown without the exception type: the message says it all.
    assert problem.message == "FeatureService 'svc': 'features' must not be empty."
    assert (problem.file, problem.line) == ("defs.py", line_of(repo / "defs.py", "svc = "))


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "good.py": HEADER,
            "broken.py": """
                from featurestore import Entity

                merchant = Entity(name="merchant"
                x = 1
            """,
        },
    )
    problem = only_problem(repo)
    # The other file still loaded: only the broken one is reported.
    assert problem.message == "syntax error: '(' was never closed"
    assert (problem.file, problem.line) == ("broken.py", line_of(repo / "broken.py", "merchant = "))


def test_syntax_error_line_is_exact(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "broken.py": """
                from featurestore import Entity

                user = Entity(name="user")
                def oops(:
                    pass
            """,
        },
    )
    problem = only_problem(repo)
    assert problem.message == "syntax error: invalid syntax"
    assert (problem.file, problem.line) == ("broken.py", line_of(repo / "broken.py", "def oops"))


def test_exception_in_user_code_names_file_and_line(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "defs.py": HEADER
            + """
    thresholds = {"low": 1}
    limit = thresholds["high"]
"""
        },
    )
    problem = only_problem(repo)
    assert problem.message == "KeyError: 'high'"
    assert (problem.file, problem.line) == ("defs.py", line_of(repo / "defs.py", "limit = "))


def test_exception_in_a_helper_module_points_at_the_deepest_repo_line(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "lib/__init__.py": "",
            "lib/windows.py": """
                def window_days(name):
                    days = {"week": 7}
                    return days[name] * 1


                def check(days):
                    if days > 30:
                        raise ValueError(f"window of {days} days is too long")
                    return days
            """,
            "views.py": """
                from lib.windows import check, window_days

                WEEK = check(window_days("week"))
                MONTH = check(31)
            """,
        },
    )
    problem = only_problem(repo)
    assert problem.message == "ValueError: window of 31 days is too long"
    assert (problem.file, problem.line) == (
        "lib/windows.py",
        line_of(repo / "lib/windows.py", "raise ValueError"),
    )


def test_several_problems_are_reported_at_once(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {
            "defs.py": HEADER
            + """
    no_entity = FeatureView(
        name="no_entity", entities=["usr"], source=src, schema=[Field(name="x", dtype=Int64)]
    )
    no_source = FeatureView(
        name="no_source", entities=[user], source="srx", schema=[Field(name="x", dtype=Int64)]
    )
    svc = FeatureService(name="svc", features=["stats:clicks", "stats:nope", "gone:x"])
    model = Model(name="model", feature_services=["svcs"], purpose="ads", owner="me")
""",
            "governance.py": """
                from featurestore import FeatureMatch, ModelMatch, Policy

                policy = Policy(
                    name="policy",
                    effect="deny",
                    features=FeatureMatch(views=["statz"]),
                    models=ModelMatch(names=["mdl"]),
                )
            """,
            "broken.py": """
                x = (
            """,
            "raises.py": """
                import os

                SECRET = os.environ["FEATURESTORE_TEST_SURELY_UNSET_VARIABLE"]
            """,
        },
    )
    with pytest.raises(RepoLoadError) as info:
        load_repo(repo)
    problems = info.value.problems
    defs, gov = repo / "defs.py", repo / "governance.py"
    got = [(p.file, p.line, p.message.split(".")[0]) for p in problems]
    assert got == [
        ("broken.py", 1, "syntax error: '(' was never closed"),
        (
            "raises.py",
            line_of(repo / "raises.py", "SECRET"),
            "KeyError: 'FEATURESTORE_TEST_SURELY_UNSET_VARIABLE'",
        ),
        (
            "defs.py",
            line_of(defs, "no_entity = "),
            "FeatureView 'no_entity' refers to unknown entity 'usr'",
        ),
        (
            "defs.py",
            line_of(defs, "no_source = "),
            "FeatureView 'no_source' refers to unknown source 'srx'",
        ),
        (
            "defs.py",
            line_of(defs, "svc = "),
            "FeatureService 'svc' refers to 'stats:nope', but view 'stats' has no feature 'nope'",
        ),
        (
            "defs.py",
            line_of(defs, "svc = "),
            "FeatureService 'svc' refers to 'gone:x', but there is no feature view 'gone'",
        ),
        (
            "defs.py",
            line_of(defs, "model = "),
            "Model 'model' consumes unknown feature service 'svcs'",
        ),
        (
            "governance.py",
            line_of(gov, "policy = "),
            "Policy 'policy' names unknown feature view 'statz'",
        ),
        ("governance.py", line_of(gov, "policy = "), "Policy 'policy' names unknown model 'mdl'"),
    ]
    message = str(info.value)
    assert message.startswith("The feature repo has 9 problems:\n")
    assert f"  - defs.py:{line_of(defs, 'model = ')}: Model 'model' consumes" in message
    assert message.endswith("Fix them and run the command again.")


# -- which files are loaded ---------------------------------------------------------


def test_ignore_globs_skip_files(tmp_path: Path) -> None:
    files = {
        **BASE_REPO,
        "featurestore.yaml": """
            project: demo
            ignore:
              - "scratch/*"
              - "*_wip.py"
        """,
        # Each would break the load if it were imported.
        "scratch/notes.py": "this is not python",
        "views_wip.py": 'raise RuntimeError("work in progress")',
        "deep/dir/stats_wip.py": "from featurestore import Entity\nu = Entity(name='user')\n",
        # Not ignored: proves the loader still walks subfolders and other files.
        "extra_entities.py": """
            from featurestore import Entity

            device = Entity(name="device", join_key="device_id")
        """,
    }
    repo = write_repo(tmp_path / "repo", files)
    assert load_config(repo).ignore == ("scratch/*", "*_wip.py")
    contents = load_repo(repo)
    assert sorted(contents.entities) == ["device", "merchant", "user"]


def test_data_and_hidden_folders_are_not_loaded(tmp_path: Path) -> None:
    files = {
        **BASE_REPO,
        "data/generate.py": 'raise RuntimeError("not a definition file")',
        ".venv/lib.py": 'raise RuntimeError("not a definition file")',
    }
    repo = write_repo(tmp_path / "repo", files)
    assert sorted(load_repo(repo).feature_views) == ["merchant_stats", "user_stats"]


def test_edits_between_two_loads_are_seen(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", BASE_REPO)
    first = load_repo(repo)
    assert first.entities["user"].join_key == "user_id"
    assert first.feature_views["user_stats"].entities[0].join_key == "user_id"

    # Same file, same length, same second: only the content differs.
    entities = repo / "entities.py"
    text = entities.read_text()
    entities.write_text(text.replace('join_key="user_id"', 'join_key="user_ix"'))
    second = load_repo(repo)
    assert second.entities["user"].join_key == "user_ix"
    # The importing file sees the edited module too, not a cached one.
    assert second.feature_views["user_stats"].entities[0].join_key == "user_ix"

    # A file that appears between loads is picked up, and one that goes away is forgotten.
    (repo / "more.py").write_text(
        "from featurestore import Entity\n\ndevice = Entity(name='device')\n"
    )
    assert sorted(load_repo(repo).entities) == ["device", "merchant", "user"]
    (repo / "more.py").unlink()
    assert sorted(load_repo(repo).entities) == ["merchant", "user"]


def test_a_fixed_problem_is_gone_on_the_next_load(tmp_path: Path) -> None:
    broken = replace_once(BASE_REPO, "views.py", "dtype=Float64", 'dtype="flot64"')
    repo = write_repo(tmp_path / "repo", broken)
    problems = load_problems(repo)
    # views.py fails when models.py imports it and again on its own: reported once.
    assert [(p.file, p.line) for p in problems] == [
        ("views.py", line_of(repo / "views.py", '"flot64"')),
    ]
    assert problems[0].message.startswith("Field 'chargeback_rate': dtype: unknown dtype 'flot64'.")
    (repo / "views.py").write_text((repo / "views.py").read_text().replace("flot64", "float64"))
    assert sorted(load_repo(repo).feature_views) == ["merchant_stats", "user_stats"]


def test_two_repos_with_same_module_names_in_one_process(tmp_path: Path) -> None:
    # Both repos have entities.py, views.py, ...: each load must read its own files,
    # not modules of the same name imported by the other load.
    a = write_repo(tmp_path / "a", BASE_REPO)
    b = write_repo(
        tmp_path / "b",
        replace_once(BASE_REPO, "entities.py", 'join_key="user_id"', 'join_key="uid"'),
    )
    assert load_repo(a).feature_views["user_stats"].join_keys == ["user_id"]
    assert load_repo(b).feature_views["user_stats"].join_keys == ["uid"]
    assert load_repo(a).feature_views["user_stats"].join_keys == ["user_id"]


# -- featurestore.yaml --------------------------------------------------------------


def test_unknown_setting_suggests_the_known_one(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"featurestore.yaml": "project: demo\nregsitry: x.db\n"})
    with pytest.raises(RepoConfigError) as info:
        load_repo(repo)
    assert str(info.value) == (
        "featurestore.yaml: unknown setting 'regsitry'. Did you mean 'registry'? "
        "Known settings: project, registry, offline_store, online_store, kafka, spark, policy, "
        "serving, push, state_dir, ignore."
    )


def test_unknown_nested_setting_suggests_the_known_one(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path / "repo",
        {"featurestore.yaml": "project: demo\nonline_store:\n  redis_ulr: redis://x:6379/0\n"},
    )
    with pytest.raises(RepoConfigError) as info:
        load_repo(repo)
    assert str(info.value) == (
        "featurestore.yaml: unknown setting 'online_store.redis_ulr'. Did you mean 'redis_url'? "
        "Known settings of online_store: redis_url, cluster, require_api_key, cache."
    )


def test_env_expansion_with_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FS_TEST_REGISTRY", raising=False)
    monkeypatch.setenv("FS_TEST_REDIS_HOST", "redis.internal")
    repo = write_repo(
        tmp_path / "repo",
        {
            **BASE_REPO,
            "featurestore.yaml": """
                project: demo
                registry: ${FS_TEST_REGISTRY:-data/other.db}
                online_store:
                  redis_url: redis://${FS_TEST_REDIS_HOST:-localhost}:${FS_TEST_REDIS_PORT:-6380}/1
            """,
        },
    )
    config = load_repo(repo).config
    assert config.registry_url == f"sqlite:///{repo}/data/other.db"
    assert config.redis_url == "redis://redis.internal:6380/1"

    monkeypatch.setenv("FS_TEST_REGISTRY", "postgresql+psycopg://fs@db/registry")
    monkeypatch.setenv("FS_TEST_REDIS_PORT", "7000")
    config = load_config(repo)
    assert config.registry_url == "postgresql+psycopg://fs@db/registry"
    assert config.redis_url == "redis://redis.internal:7000/1"

    # An empty default is a default too.
    monkeypatch.delenv("FS_TEST_REDIS_HOST")
    (repo / "featurestore.yaml").write_text(
        "project: demo\nonline_store:\n  redis_url: redis://${FS_TEST_REDIS_HOST:-}:1/0\n"
    )
    assert load_config(repo).redis_url == "redis://:1/0"


def test_env_variable_without_default_must_be_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FS_TEST_REDIS_URL", raising=False)
    repo = write_repo(
        tmp_path / "repo",
        {"featurestore.yaml": "project: demo\nonline_store:\n  redis_url: ${FS_TEST_REDIS_URL}\n"},
    )
    with pytest.raises(RepoConfigError) as info:
        load_config(repo)
    message = str(info.value)
    assert message.startswith("featurestore.yaml: ")
    assert "online_store.redis_url' uses ${FS_TEST_REDIS_URL}, which is not set." in message
    assert message.endswith(
        "Export FS_TEST_REDIS_URL or write ${FS_TEST_REDIS_URL:-default} to give a default."
    )


@pytest.mark.parametrize(
    ("yaml", "setting"),
    [
        ("registry: ${FS_TEST_UNSET}", "registry"),
        ("online_store:\n  redis_url: ${FS_TEST_UNSET}", "online_store.redis_url"),
    ],
)
def test_env_variable_error_names_the_setting_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, yaml: str, setting: str
) -> None:
    monkeypatch.delenv("FS_TEST_UNSET", raising=False)
    repo = write_repo(tmp_path / "repo", {"featurestore.yaml": f"project: demo\n{yaml}\n"})
    with pytest.raises(RepoConfigError) as info:
        load_config(repo)
    assert str(info.value).startswith(f"featurestore.yaml: '{setting}' uses ${{FS_TEST_UNSET}}")


def test_missing_config_file(tmp_path: Path) -> None:
    (tmp_path / "defs.py").write_text("")
    with pytest.raises(RepoConfigError, match=r"^No featurestore\.yaml in "):
        load_repo(tmp_path)


def test_every_definition_of_a_big_file_records_its_own_line(tmp_path: Path) -> None:
    """Lines come from one line table per module, not ``f_lineno`` (which rescans the
    module's table per call and made a one-file repo quadratic): each object, including
    ones built over several lines and inside a function, points at its own call."""
    body = ["from featurestore import Entity, Int64", ""]
    expected: dict[str, int] = {}
    for i in range(3000):
        expected[f"e{i}"] = len(body) + 1
        if i % 2:
            body.append(f'e{i} = Entity(name="e{i}", join_key="k{i}", dtype=Int64)')
        else:
            body += [
                f"e{i} = Entity(",
                f'    name="e{i}",',
                f'    join_key="k{i}", dtype=Int64,',
                ")",
            ]
    body += ["", "def make():", '    return Entity(name="made", join_key="m", dtype=Int64)', ""]
    expected["made"] = len(body) - 1
    body.append("made = make()")
    (tmp_path / "featurestore.yaml").write_text("project: p\n")
    (tmp_path / "entities.py").write_text("\n".join(body) + "\n")
    entities = load_repo(tmp_path).entities
    got = {name: e.location.line for name, e in entities.items() if e.location is not None}
    assert got == expected


def test_repo_files_keep_bytecode_checked_against_their_content(tmp_path: Path) -> None:
    """A second load unmarshals instead of compiling, and a same-second, same-size edit
    still wins: the caches are PEP 552 checked-hash ones, refreshed when a file changes."""
    import importlib.util

    repo = write_repo(tmp_path / "repo", BASE_REPO)
    load_repo(repo)
    entities = repo / "entities.py"
    cache = Path(importlib.util.cache_from_source(str(entities)))

    def header() -> bytes:
        return cache.read_bytes()[:16]

    assert int.from_bytes(header()[4:8], "little") == 0b11  # hash-based, source checked
    assert header()[8:16] == importlib.util.source_hash(entities.read_bytes())
    entities.write_text(entities.read_text().replace('join_key="user_id"', 'join_key="user_ix"'))
    assert load_repo(repo).entities["user"].join_key == "user_ix"
    assert header()[8:16] == importlib.util.source_hash(entities.read_bytes())


def test_two_copies_of_a_repo_point_at_their_own_files(tmp_path: Path) -> None:
    """Identical files compile to equal code objects; locations must still name the file
    that was loaded, not the copy seen first."""
    one = write_repo(tmp_path / "one", BASE_REPO)
    two = write_repo(tmp_path / "two", BASE_REPO)
    for repo in (one, two, one):
        for kind, name, obj in load_repo(repo):
            assert obj.location is not None, (kind, name)
            assert Path(obj.location.file).is_relative_to(repo.resolve()), (kind, name)


def test_a_damaged_bytecode_cache_is_compiled_again(tmp_path: Path) -> None:
    """A cache whose header is right but whose code is garbage (a copy cut short, a full
    disk) must not make the repo unloadable with "bad marshal data"."""
    import importlib.util
    import marshal

    repo = write_repo(tmp_path / "repo", BASE_REPO)
    load_repo(repo)
    cache = Path(importlib.util.cache_from_source(str(repo / "entities.py")))
    data = cache.read_bytes()
    for damaged in (data[:16] + b"\x00garbage", data[:16], data[: len(data) // 2]):
        cache.write_bytes(damaged)
        assert sorted(load_repo(repo).entities) == ["merchant", "user"]
        again = cache.read_bytes()  # compiled again: the same header, code that loads
        assert again[:16] == data[:16]
        assert marshal.loads(again[16:]).co_filename == str(repo / "entities.py")
