"""The command line, as a user runs it: plan, apply, versions, describe, resolve, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featurestore.cli import app
from tests.helpers import change_credit_limit_dtype

runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_plan_apply_and_a_new_version_beside_the_old(example_repo: Path) -> None:
    repo = str(example_repo)
    out = run("plan", "-r", repo, "--detailed-exitcode", code=2)
    assert "+ FeatureView user_profile: new (v1)" in out
    assert "Plan: 17 new" in out
    out = run("apply", "-r", repo)
    assert "Applied 17 change(s) to project 'payments'" in out
    assert (
        run("plan", "-r", repo, "--detailed-exitcode")
        .strip()
        .endswith("No changes. The registry matches the repo.")
    )
    assert "No changes" in run("apply", "-r", repo)

    change_credit_limit_dtype(example_repo)
    out = run("plan", "-r", repo, "--detailed-exitcode", code=2)
    assert (
        "~ FeatureView user_profile: new version v2 (v1 stays served) — "
        "credit_limit float64 -> float32"
    ) in out
    assert "stays pinned to user_profile@v1 (v2 available)" in out
    run("apply", "-r", repo)

    out = run("versions", "user_profile", "-r", repo)
    lines = out.splitlines()
    v1 = next(i for i, line in enumerate(lines) if line.strip().startswith("v1 "))
    v2 = next(i for i, line in enumerate(lines) if line.strip().startswith("v2 (latest)"))
    assert "models: fraud_detector, promo_ranker" in lines[v1]
    assert "credit_limit float64" in lines[v1 + 1]
    assert "credit_limit float32" in lines[v2 + 1]

    data = json.loads(run("versions", "user_profile", "-r", repo, "--json"))
    assert [(v["version"], v["features"]["credit_limit"]) for v in data["versions"]] == [
        ("v1", "float64"),
        ("v2", "float32"),
    ]
    out = run("resolve", "user_profile@v1:credit_limit", "user_profile:credit_limit", "-r", repo)
    assert out.splitlines() == [
        "user_profile@v1:credit_limit  float64",
        "user_profile@v2:credit_limit  float32",
    ]
    # The models stay on v1 until promoted.
    assert "user_profile@v1:age  int64" in run("resolve", "--model", "fraud_detector", "-r", repo)
    assert "user_profile@v2" in run("promote", "fraud_detector", "-r", repo)
    assert "user_profile@v2:age  int64" in run("resolve", "--model", "fraud_detector", "-r", repo)


def test_errors_are_one_clear_line_and_exit_1(example_repo: Path) -> None:
    repo = str(example_repo)
    run("apply", "-r", repo)
    out = run("resolve", "user_profil:age", "-r", repo, code=1)
    assert "Unknown feature view 'user_profil'" in out
    assert "Did you mean 'user_profile'?" in out
    assert "Traceback" not in out
    out = run("resolve", "user_profile@v7:age", "-r", repo, code=1)
    assert "has no version v7 (it has: v1)" in out
    out = run("resolve", "user_profile:agee", "-r", repo, code=1)
    assert "Did you mean 'age'?" in out
    out = run("resolve", "not a ref:", "-r", repo, code=1)
    assert "Cannot parse feature reference" in out
    out = run("plan", "-r", str(example_repo / "nowhere"), code=1)
    assert "No featurestore.yaml" in out


def test_loader_problems_are_all_listed_with_file_and_line(example_repo: Path) -> None:
    models = example_repo / "models.py"
    models.write_text(
        models.read_text().replace('"account_age_days", "credit_limit"]', '"account_age_dayz"]')
    )
    (example_repo / "broken.py").write_text("x = (\n")
    out = run("plan", "-r", str(example_repo), code=1)
    assert "The feature repo has 2 problems" in out
    assert "broken.py:1: syntax error" in out
    assert "FeatureView 'user_profile' has no feature 'account_age_dayz'" in out
    assert "Did you mean 'account_age_days'?" in out
    assert "models.py:" in out


def test_describe_and_list(example_repo: Path) -> None:
    repo = str(example_repo)
    run("apply", "-r", repo)
    data = json.loads(run("describe", "fraud_detector", "-r", repo, "--json"))
    assert data["kind"] == "model"
    assert data["spec"]["pins"] == {
        "merchant_stats": 1,
        "txn_amount_vs_1h": 1,
        "user_profile": 1,
        "user_txn_stats": 1,
    }
    assert data["history"][0]["location"] == "models.py:32"
    data = json.loads(run("describe", "user_profile@v1", "-r", repo, "--json"))
    assert data["models"] == ["fraud_detector", "promo_ranker"]
    data = json.loads(run("list", "feature_view", "-r", repo, "--json"))
    assert data["total"] == 4
    assert [(r["name"], r["version"]) for r in data["objects"]] == [
        ("merchant_stats", 1),
        ("txn_amount_vs_1h", 1),
        ("user_profile", 1),
        ("user_txn_stats", 1),
    ]


def test_describe_prints_text_for_people_and_json_for_scripts(example_repo: Path) -> None:
    repo = str(example_repo)
    run("apply", "-r", repo)
    text = run("describe", "fraud_detector", "-r", repo)
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)  # the text form used to be the JSON too
    assert text.startswith("model 'fraud_detector' in project 'payments': active, revision 1\n")
    assert "    pins:\n      merchant_stats: 1\n" in text
    assert "  history:\n    revision 1  " in text
    assert text.rstrip().endswith("models.py:32")
    text = run("describe", "user_profile@v1", "-r", repo)
    assert text.startswith("Feature view version user_profile@v1 in project 'payments': active")
    assert "values: DE, FR, GB, NL, ES, IT, US, PL" in text
    assert text.rstrip().endswith("models: fraud_detector, promo_ranker")
    data = json.loads(run("describe", "user_profile@v1", "-r", repo, "--json"))
    assert data["kind"] == "feature_view_version"
    assert data["spec"]["name"] == "user_profile"


def test_every_store_a_command_opens_is_closed(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also when the command fails: closing flushes the audit queue and releases Redis."""
    from featurestore.store import FeatureStore

    repo = str(example_repo)
    run("apply", "-r", repo)
    opened: list[FeatureStore] = []
    closed: list[FeatureStore] = []
    init, close = FeatureStore.__init__, FeatureStore.close

    def counted_init(self: FeatureStore, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(self)

    def counted_close(self: FeatureStore) -> None:
        closed.append(self)
        close(self)

    monkeypatch.setattr(FeatureStore, "__init__", counted_init)
    monkeypatch.setattr(FeatureStore, "close", counted_close)
    for args, code in [
        (["plan"], 0),
        (["apply"], 0),
        (["versions", "user_profile"], 0),
        (["describe", "fraud_detector"], 0),
        (["describe", "nosuch"], 1),
        (["list"], 0),
        (["resolve", "--model", "fraud_detector"], 0),
        (["resolve", "user_profile:nosuch"], 1),
        (["promote", "fraud_detector"], 0),
        (["training-sets"], 0),
    ]:
        before = len(opened)
        run(*args, "-r", repo, code=code)
        assert len(opened) > before, args
        assert closed == opened, f"{args}: a store left open"


@pytest.mark.parametrize("bad", ["user_profile", "user_profile@vx"])
def test_retire_needs_a_version(example_repo: Path, bad: str) -> None:
    out = run("retire", bad, "-r", str(example_repo), code=1)
    assert "write VIEW@vN" in out


def test_dev_up_status_down(example_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from featurestore.devservices import free_port

    redis_port, kafka_port = free_port(), free_port()
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", f"redis://127.0.0.1:{redis_port}/0")
    monkeypatch.setenv("FEATURESTORE_KAFKA", f"127.0.0.1:{kafka_port}")
    repo = str(example_repo)
    try:
        rows = json.loads(run("dev", "up", "-r", repo, "--json"))
        assert [(r["name"], r["state"], r["address"]) for r in rows] == [
            ("redis", "running", f"127.0.0.1:{redis_port}"),
            ("kafka", "running", f"127.0.0.1:{kafka_port}"),
        ]
        pids = [r["pid"] for r in rows]
        # Idempotent: the same processes answer a second `up`.
        assert [r["pid"] for r in json.loads(run("dev", "up", "-r", repo, "--json"))] == pids
        out = run("dev", "status", "-r", repo)
        assert out.count(" running ") == 2
        assert (example_repo / ".featurestore" / "redis.pid").exists()
    finally:
        run("dev", "down", "-r", repo)
    out = run("dev", "status", "-r", repo, code=3)
    assert out.count(" stopped ") == 2
