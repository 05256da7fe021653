"""Every job from Python: ``store.materialize`` and ``store.stream`` behave as the CLI does and
return the same records (real Redis, the real Kafka-protocol broker, real Parquet)."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import app
from featurestore.errors import EntityInputError
from tests.helpers import write_repo
from tests.test_materialize import DEFS, NOW, ROWS, write_source
from tests.test_stream import event, landed_position, produce, stream_repo

pytestmark = [pytest.mark.services]
_projects = itertools.count()
VOLATILE = ("id", "started_at", "finished_at")


def batch_store(root: Path, services: Any) -> FeatureStore:
    config = (
        f"project: jobs{next(_projects)}\nregistry: data/registry.db\n"
        f"online_store:\n  redis_url: {services.redis_url}\n"
    )
    repo = write_repo(root / "repo", {"featurestore.yaml": config, "defs.py": DEFS})
    store = FeatureStore(repo)
    store.apply()
    write_source(store, ROWS)
    return store


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k not in VOLATILE}
    if out.get("validation"):
        out["validation"] = {k: v for k, v in out["validation"].items() if k != "report"}
    return out


def timeless(lines: list[str]) -> list[str]:
    """Progress lines without what differs between two runs (timings, run ids)."""
    return [re.sub(r"[0-9.]+s\b|run [0-9]+|/[^ ]*\.html", "#", line) for line in lines]


def test_store_materialize_equals_the_cli(tmp_path: Path, services: Any) -> None:
    start, end = (NOW - timedelta(days=5)).isoformat(), NOW.isoformat()
    window = ["--start", start, "--end", end, "--engine", "local"]
    with batch_store(tmp_path / "cli", services) as cli_store:
        repo = str(cli_store.config.repo_path)
        out = CliRunner().invoke(app, ["materialize", "user_stats", "-r", repo, *window])
        assert out.exit_code == 0, out.output
        shown = json.loads(CliRunner().invoke(app, ["runs", "-r", repo, "--json"]).output)
    with batch_store(tmp_path / "py", services) as store:
        lines: list[str] = []
        runs = store.materialize(
            ["user_stats"],
            start=NOW - timedelta(days=5),
            end=NOW,
            engine="local",
            progress=lines.append,
        )
        recorded = store.registry.runs.records(store.project)
    assert len(runs) == 1
    assert len(shown) == 1
    returned = orjson.loads(orjson.dumps(asdict(runs[0].record)))  # as `runs --json` encodes
    # The record returned is the one recorded, complete (finished, with its counts) ...
    assert asdict(runs[0].record) == asdict(recorded[0])
    assert returned["status"] == "succeeded"
    assert returned["rows_offline"] == 4  # the row older than the window is not read
    # ... and equals the CLI's run of the same window, field by field.
    cli = comparable(shown[0])
    py = comparable(returned)
    assert py.pop("project") != cli.pop("project")
    for record in (py, cli):  # the same files, in another folder, written at another time
        record["sources"] = [
            {**s, "path": "/".join(Path(s["path"]).parts[-2:]), "mtime": None}
            for s in record["sources"]
        ]
    assert py == cli
    # The same progress, line by line.
    assert timeless(lines) == timeless(out.output.splitlines())


def test_store_stream_stops_after_max_events_then_catches_up(tmp_path: Path, services: Any) -> None:
    path, topic = stream_repo(tmp_path, services)
    events = [event(u, m, 10.0 + m) for m in range(5) for u in (1, 2, 3)]
    events.insert(4, {"user_id": 1, "amount": "not a number", "event_timestamp": "x"})
    produce(services.kafka_bootstrap, topic, events)  # 16 events, one of them bad
    with FeatureStore(path) as store:
        lines: list[str] = []
        first = store.stream(["velocity"], max_events=6, flush_seconds=0.2, progress=lines.append)
        assert len(first) == 1
        assert first[0].accepted + first[0].dead_letters == 6
        assert sum(landed_position(store).offsets.values()) == 6
        assert any("consuming" in line for line in lines)
        rest = store.stream(until_caught_up=True, flush_seconds=0.2)
        assert rest[0].accepted + rest[0].dead_letters == 10
        assert first[0].dead_letters + rest[0].dead_letters == 1
        # Every event landed, none twice (the bundled broker answers end offsets short, so
        # the count of events produced is the reference).
        assert sum(landed_position(store).offsets.values()) == len(events)
        assert first[0].offline_rows + rest[0].offline_rows == 15
        # Caught up already: returns after a quiet spell, having consumed nothing.
        again = store.stream(until_caught_up=True, flush_seconds=0.2)
        assert again[0].accepted == again[0].dead_letters == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_events": 0}, "max_events must be a positive integer"),
        ({"max_events": 2.5}, "max_events must be a positive integer"),
        ({"seconds": -1}, "seconds must be positive"),
    ],
)
def test_store_stream_refuses_bad_stop_conditions(
    tmp_path: Path, services: Any, kwargs: dict[str, Any], message: str
) -> None:
    path, _topic = stream_repo(tmp_path, services)
    with FeatureStore(path) as store, pytest.raises(EntityInputError, match=message):
        store.stream(**kwargs)


def test_store_backfill_equals_the_cli(tmp_path: Path, services: Any, spark: Any) -> None:
    """``spark``: the session the backfill's getOrCreate then reuses."""
    path, topic = stream_repo(tmp_path, services)
    produce(
        services.kafka_bootstrap, topic, [event(u, m, 1.0 + m) for m in range(4) for u in (1, 2)]
    )
    with FeatureStore(path) as store:
        store.stream(until_caught_up=True, flush_seconds=0.2)
        lines: list[str] = []
        result = store.backfill("velocity", source="log", progress=lines.append)
    assert result["view"] == "velocity@v1"
    assert result["rows"] == 8
    out = CliRunner().invoke(
        app, ["stream", "backfill", "velocity", "--from", "log", "-r", str(path)]
    )
    assert out.exit_code == 0, out.output
    cli = orjson.loads(out.output.splitlines()[-1])
    # The second run replaces exactly what the first committed.
    assert (cli["view"], cli["rows"], cli["replaced"]) == ("velocity@v1", 8, 8)
    assert timeless(lines) == timeless(out.output.splitlines()[:-1])
