"""Definition errors say what arrived (attrs-style: "... (got 3 that is a int)")."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from featurestore import (
    DriftMonitor,
    Entity,
    FeatureView,
    Field,
    Float64,
    Int64,
    KafkaSource,
    ParquetSource,
    UnixTimestamp,
)
from featurestore.errors import DefinitionError

user = Entity(name="user", join_key="user_id", dtype=Int64)
src = ParquetSource(name="src", path="data/src", timestamp_field="ts")
kafka_schema = [Field(name="user_id", dtype=Int64), Field(name="ts", dtype=UnixTimestamp)]


def view(**kw: object) -> FeatureView:
    args: dict = {"name": "v", "entities": [user], "source": src}
    args["schema"] = [Field(name="x", dtype=Float64)]
    return FeatureView(**{**args, **kw})


CASES: list[tuple[Callable[[], object], str]] = [
    (lambda: view(transformation=42), "'transformation' must be a function (got 42 that is a int)"),
    (lambda: view(aggregations=["count"]), "list of Aggregation (got 'count' that is a str)"),
    (lambda: view(schema=[Field(name="x", dtype=Float64), "y"]), "(got 'y' that is a str)"),
    (lambda: view(description=3), "'description' must be a str (got 3 that is a int)"),
    (
        lambda: KafkaSource(
            name="k", topic="t", timestamp_field="ts", schema=kafka_schema, batch_source="data/x"
        ),
        "must be a ParquetSource (got 'data/x' that is a str)",
    ),
    (
        lambda: DriftMonitor(name="m", model="fraud", window="1h"),
        "'window' must be a positive timedelta (got '1h' that is a str)",
    ),
    (
        lambda: DriftMonitor(name="m", model="fraud", window=timedelta(hours=1), min_samples=0.5),
        "'min_samples' must be a positive int (got 0.5 that is a float)",
    ),
    (lambda: DriftMonitor(name="m", model=7), "a Model or a model name (got 7 that is a int)"),
]


@pytest.mark.parametrize(("build", "message"), CASES)
def test_definition_errors_say_what_arrived(build: Callable[[], object], message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        build()
    assert message in str(info.value)


def test_long_values_are_shortened() -> None:
    with pytest.raises(DefinitionError) as info:
        view(description=10**200)
    assert len(str(info.value)) < 300
    assert "..." in str(info.value)
