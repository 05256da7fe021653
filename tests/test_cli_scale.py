"""The CLI on a big generated repo (200 views, 2,000 models, the split layout): plan and
apply summarise and cap what they print, list and describe filter and page, JSON is
complete, and errors still name file and line."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from benchmarks._registry_repo import model_block, write_repo
from featurestore.cli import app
from featurestore.registry.plan import Change, ChangeKind

VIEWS, MODELS = 200, 2000
OBJECTS = 1 + 2 * VIEWS + 2 * MODELS  # the entity, a source per view, a service per model


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The generated repo applied once (its registry inside it), and apply's output."""
    root = write_repo(tmp_path_factory.mktemp("scale") / "repo", views=VIEWS, models=MODELS)
    return root, run("apply", "-r", str(root))


@pytest.fixture
def repo(applied: tuple[Path, str], tmp_path: Path) -> Path:
    """A copy of the applied repo and its registry, for a test that changes them."""
    return Path(shutil.copytree(applied[0], tmp_path / "repo"))


def readers_of(view: int) -> list[str]:
    """The models whose service reads ``view_<view>`` (as the generator picks them)."""
    return sorted(
        f"model_{i}" for i in range(MODELS) if view in {(i * 3 + k) % VIEWS for k in range(3)}
    )


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert text.count(old) >= count, old
    path.write_text(text.replace(old, new))


def change_repo(root: Path) -> None:
    """view_5 gets a new version (a dtype change); views 100-199 a new owner (metadata)."""
    edit(
        root / "views_0000.py",
        'name="view_5", entities=["user"], source=src_5, schema=[Field(name="f0", dtype=Float64)',
        'name="view_5", entities=["user"], source=src_5, schema=[Field(name="f0", dtype="float32")',
    )
    edit(root / "views_0001.py", 'owner="team-', 'owner="squad-', count=100)


# -- apply ------------------------------------------------------------------------


def test_a_big_first_apply_prints_a_summary_not_every_change(applied: tuple[Path, str]) -> None:
    _, out = applied
    lines = out.splitlines()
    assert len(lines) < 200, f"{len(lines)} lines for {OBJECTS:,} changes"
    assert sum(line.startswith("  applied ") for line in lines) == 50
    assert f"  ... {OBJECTS - 50:,} more applied than listed; --limit 0 lists every change" in out
    # Every model has a note (its pins); the first 50 are printed, each naming its model.
    assert sum(line.startswith("  note: Model model_") for line in lines) == 50
    assert f"  ... and {MODELS - 50:,} more notes;" in out
    for line in (
        "  Entity: 1 new",
        "  Source: 200 new",
        "  FeatureView: 200 new",
        "  FeatureService: 2,000 new",
        "  Model: 2,000 new",
        f"Applied {OBJECTS:,} change(s) to project 'scale' (registry serial 1).",
    ):
        assert line in lines, line


def test_apply_limit_and_json(repo: Path) -> None:
    change_repo(repo)
    out = run("apply", "-r", str(repo), "--limit", "5")
    assert sum(line.startswith("  applied ") for line in out.splitlines()) == 5
    assert "  ... 96 more applied than listed" in out
    assert "  FeatureView: 1 new version, 100 metadata changed, 99 unchanged" in out
    assert "Applied 101 change(s)" in out
    # Applied: the next apply has nothing to do, and its JSON says so with the counts.
    data = json.loads(run("apply", "-r", str(repo), "--json"))
    assert data["apply_id"] is None
    assert data["counts"]["feature_view"] == {"unchanged": 200}
    assert len(data["changes"]) == OBJECTS


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_apply_progress_every_n_changes_or_every_second() -> None:
    from featurestore.registry.plan_render import ApplyProgress  # new: main fails only here

    printed: list[str] = []
    clock = FakeClock()
    progress = ApplyProgress(printed.append, limit=3, every=10, interval=1.0, clock=clock)
    change = Change("model", "m", ChangeKind.NEW, {})
    for _ in range(25):
        progress(change)
    assert printed[:3] == ["  applied Model m: new"] * 3
    assert printed[3:] == ["  ... 10 changes applied", "  ... 20 changes applied"]
    clock.now = 1.5  # a slow change: the next one reports although 26 is no multiple of 10
    progress(change)
    progress(change)  # and the one after it does not
    assert printed[-1] == "  ... 26 changes applied"
    assert len(printed) == 6
    progress.finish()
    assert printed[-1].startswith("  ... 24 more applied than listed")
    everything: list[str] = []
    unlimited = ApplyProgress(everything.append, limit=0, every=10, clock=clock)
    for _ in range(25):
        unlimited(change)
    unlimited.finish()
    assert everything == ["  applied Model m: new"] * 25


# -- plan -------------------------------------------------------------------------


def test_plan_counts_per_kind_then_caps_the_changes(repo: Path) -> None:
    change_repo(repo)
    out = run("plan", "-r", str(repo))
    lines = out.splitlines()
    assert lines[:6] == [
        "Project 'scale':",
        "  Entity: 1 unchanged",
        "  Source: 200 unchanged",
        "  FeatureView: 1 new version, 100 metadata changed, 99 unchanged",
        "  FeatureService: 2,000 unchanged",
        "  Model: 2,000 unchanged (30 with a note)",
    ]
    # 101 view changes, then the 30 models left on view_5@v1: 50 shown, 81 more.
    listed = [line for line in lines if re.match(r"  [+~=-] ", line)]
    assert len(listed) == 50
    # The new version first (the list is capped), then the metadata changes by name.
    assert listed[:2] == [
        "  ~ FeatureView view_5: new version v2 (v1 stays served) — f0 float64 -> float32",
        "  ~ FeatureView view_100: metadata changed (stays v1)",
    ]
    assert (
        "  ... and 81 more; --limit 0 shows all, --only KIND narrows them (e.g. --only model), "
        "--json lists every change"
    ) in lines
    assert lines[-1] == "Plan: 1 new version, 100 metadata"

    everything = run("plan", "-r", str(repo), "--limit", "0").splitlines()
    assert len([line for line in everything if re.match(r"  [+~=-] ", line)]) == 131
    assert not any(line.startswith("  ... and") for line in everything)


def test_plan_only_kinds(repo: Path) -> None:
    change_repo(repo)
    out = run("plan", "-r", str(repo), "--only", "model")
    models = [line for line in out.splitlines() if line.startswith("  = Model ")]
    assert models == [f"  = Model {m}: unchanged" for m in readers_of(5)]
    assert "FeatureView view_" not in out.split("\n\n", 1)[1]
    assert "  Model: 2,000 unchanged (30 with a note)" in out  # counts cover the whole plan
    # Repeated or comma-separated, with the short names people type.
    for args in (["--only", "view,model"], ["--only", "views", "--only", "Model"]):
        out = run("plan", "-r", str(repo), "--limit", "0", *args)
        assert sum(
            line.startswith(("  ~ FeatureView", "  = Model")) for line in out.split("\n")
        ) == (131)
    out = run("plan", "-r", str(repo), "--only", "view", "--limit", "3")
    assert "  ... and 98 more; --limit 0 shows all, --json lists every change" in out
    out = run("plan", "-r", str(repo), "--only", "policy")
    assert "  Nothing to show for Policy." in out
    out = run("plan", "-r", str(repo), "--only", "model,viewz", code=1)
    assert "--only: unknown kind 'viewz'. Kinds: entity, source, feature_view," in out
    assert "Traceback" not in out


def test_plan_json_is_complete_with_counts(repo: Path) -> None:
    change_repo(repo)
    data = json.loads(run("plan", "-r", str(repo), "--json", "--limit", "3"))
    assert len(data["changes"]) == OBJECTS  # --limit never caps machine output
    assert data["counts"] == {
        "entity": {"unchanged": 1},
        "source": {"unchanged": 200},
        "feature_view": {"new_version": 1, "metadata": 100, "unchanged": 99},
        "feature_service": {"unchanged": 2000},
        "model": {"unchanged": 2000},
    }
    data = json.loads(run("plan", "-r", str(repo), "--json", "--only", "view"))
    assert {c["kind"] for c in data["changes"]} == {"feature_view"}
    assert len(data["changes"]) == VIEWS
    assert data["counts"]["model"] == {"unchanged": 2000}


# -- list and describe ------------------------------------------------------------


def names(data: dict[str, Any]) -> list[str]:
    return [row["name"] for row in data["objects"]]


def test_list_pages_and_says_how_many(applied: tuple[Path, str]) -> None:
    root = str(applied[0])
    lines = run("list", "model", "-r", root).splitlines()
    assert len(lines) == 51
    assert lines[-1] == "showing 1-50 of 2,000 objects; --offset 50 for more"
    lines = run("list", "model", "-r", root, "--offset", "1990").splitlines()
    assert lines[-1] == "showing 1,991-2,000 of 2,000 objects"
    assert len(lines) == 11
    assert run("list", "-r", root, "--limit", "1").splitlines()[-1] == (
        f"showing 1-1 of {OBJECTS:,} objects; --offset 1 for more"
    )
    assert "--offset 5000 is past the end" in run("list", "-r", root, "--offset", "5000")
    assert run("list", "view", "--owner", "nobody", "-r", root).strip() == "No objects match."
    # JSON: everything unless a page is asked for, and always the total.
    data = json.loads(run("list", "model", "-r", root, "--json"))
    assert (data["total"], len(data["objects"])) == (MODELS, MODELS)
    every = sorted(f"model_{i}" for i in range(MODELS))
    assert names(data) == every
    data = json.loads(run("list", "model", "-r", root, "--json", "--limit", "7", "--offset", "20"))
    assert (data["total"], data["offset"], data["limit"]) == (MODELS, 20, 7)
    assert names(data) == every[20:27]


def test_list_filters(applied: tuple[Path, str]) -> None:
    root = str(applied[0])

    def listed(*args: str) -> list[str]:
        data = json.loads(run("list", *args, "-r", root, "--json"))
        assert data["total"] == len(data["objects"])
        return names(data)

    team1 = sorted(f"view_{i}" for i in range(VIEWS) if i % 10 == 1)
    assert listed("view", "--owner", "team-1@example.com") == team1
    assert listed("all", "--tag", "team=t1") == team1
    assert listed("--tag", "team") == sorted(f"view_{i}" for i in range(VIEWS))
    assert listed("--tag", "team=t1", "--tag", "nosuch") == []
    assert listed("feature_view", "view_1?") == sorted(f"view_{i}" for i in range(10, 20))
    assert listed("svc_19??") == sorted(f"svc_{i}" for i in range(1900, 2000))
    fraud = sorted(f"model_{i}" for i in range(MODELS) if i % 3 == 0)
    assert listed("model", "--purpose", "fraud") == fraud
    assert listed("--purpose", "fraud", "--owner", "ml-3*") == sorted(
        f"model_{i}" for i in range(MODELS) if i % 30 == 3
    )
    out = run("list", "view", "--owner", "team-1@example.com", "-r", root)
    assert out.splitlines()[-1] == "showing 1-20 of 20 objects"
    out = run("list", "model_1", "-r", root, code=1)
    assert "unknown kind 'model_1'" in out
    assert "`featurestore list all model_1`" in out
    out = run("list", "view", "--tag", "=t1", "-r", root, code=1)
    assert "--tag '=t1': write KEY=VALUE" in out


@contextmanager
def counted_statements() -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", count)


def test_list_reads_the_registry_the_same_whatever_it_matches(applied: tuple[Path, str]) -> None:
    """One snapshot read, then filtering in memory: no query per object listed."""
    root = str(applied[0])
    with counted_statements() as one:
        run("list", "model", "model_7", "-r", root, "--json")
    with counted_statements() as every:
        run("list", "-r", root, "--json", "--purpose", "fraud")
    assert one
    assert len(every) == len(one)


def test_describe_pages_a_view_versions_models(applied: tuple[Path, str]) -> None:
    root = str(applied[0])
    readers = readers_of(5)
    assert len(readers) == 30
    out = run("describe", "view_5@v1", "-r", root, "--limit", "4")
    assert f"  models: {', '.join(readers[:4])}" in out.splitlines()
    assert out.splitlines()[-1] == "  showing 1-4 of 30 models; --offset 4 for more"
    out = run("describe", "view_5@v1", "-r", root, "--limit", "4", "--offset", "28")
    assert f"  models: {', '.join(readers[28:])}" in out.splitlines()
    assert out.splitlines()[-1] == "  showing 29-30 of 30 models"
    data = json.loads(run("describe", "view_5@v1", "-r", root, "--json"))
    assert (data["models"], data["models_total"]) == (readers, 30)
    data = json.loads(run("describe", "model_7", "-r", root, "--kind", "model", "--json"))
    assert data["history_total"] == 1
    assert data["history"][0]["location"] == "models_0000.py:17"
    out = run("describe", "model_7", "-r", root, "--kind", "modle", code=1)
    assert "--kind: unknown kind 'modle'" in out


# -- errors -----------------------------------------------------------------------


def test_a_broken_reference_in_a_one_file_repo_names_its_file_and_line(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "repo", views=50, models=200, layout="one-file")
    good = model_block(17, 50)
    edit(root / "repo.py", good, good.replace(':f1"', ':nosuch"'))
    line = next(
        n
        for n, text in enumerate((root / "repo.py").read_text().splitlines(), 1)
        if text.startswith("svc_17 = FeatureService(")
    )
    out = run("plan", "-r", str(root), code=1)
    assert "The feature repo has 1 problem:" in out
    assert f"repo.py:{line}: " in out
    assert "has no feature 'nosuch'" in out


def test_thousands_of_problems_print_the_first_ones(repo: Path) -> None:
    """A broken views file leaves every service reading its views dangling."""
    (repo / "views_0000.py").write_text("x = (\n")
    out = run("plan", "-r", str(repo), code=1)
    lines = out.splitlines()
    problems = [line for line in lines if line.startswith("  - ")]
    assert len(problems) == 50
    assert problems[0] == "  - views_0000.py:1: syntax error: '(' was never closed"
    header = re.match(r"error: The feature repo has ([\d,]+) problems:", out)
    assert header, out[:200]
    total = int(header[1].replace(",", ""))
    assert total > 1000
    assert f"  ... and {total - 50:,} more (often caused by the first ones; --limit 0 lists" in out
    assert lines[-1] == "Fix them and run the command again."
    out = run("plan", "-r", str(repo), "--limit", "0", code=1)
    assert sum(line.startswith("  - ") for line in out.splitlines()) == total


def test_versions_caps_the_models_of_a_version(tmp_path: Path) -> None:
    # 20 views read by 400 models: 60 models on each view.
    root = str(write_repo(tmp_path / "repo", views=20, models=400))
    run("apply", "-r", root)
    readers = sorted(f"model_{i}" for i in range(400) if 0 in {(i * 3 + k) % 20 for k in range(3)})
    assert len(readers) == 60
    out = run("versions", "view_0", "-r", root)
    assert (
        f"models: {', '.join(readers[:50])} and 10 more "
        "(`featurestore describe view_0@v1 --offset 50`)"
    ) in out
    data = json.loads(run("versions", "view_0", "-r", root, "--json"))
    assert data["versions"][0]["models"] == readers
    data = json.loads(run("describe", "view_0@v1", "-r", root, "--json", "--offset", "50"))
    assert (data["models"], data["models_total"]) == (readers[50:], 60)
