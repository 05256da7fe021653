"""Data sources: where a feature view's rows come from.

``ParquetSource`` is a batch source (a file, a folder, or a Hive-partitioned
dataset); ``KafkaSource`` is a stream of JSON events with an optional
``batch_source`` holding the same events historically, for backfills and
training data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

from featurestore.definitions._base import (
    SourceLocation,
    check_name,
    check_str,
    check_tags,
    got,
    metadata_spec,
    set_location,
)
from featurestore.definitions.field import Field, checked_schema
from featurestore.errors import DefinitionError


@dataclass(frozen=True, slots=True, kw_only=True)
class ParquetSource:
    """Parquet rows with an event-time column.

    ``path`` is relative to the feature repo unless absolute. Timestamps are
    UTC; naive timestamps are read as UTC. ``created_timestamp_field``, when
    given, breaks ties between rows with the same event time.
    """

    kind: ClassVar[str] = "source"

    name: str
    path: str
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    location: SourceLocation | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name("ParquetSource", self.name)
        owner = f"ParquetSource '{self.name}'"
        if not isinstance(self.path, str) or not self.path:
            raise DefinitionError(f"{owner}: 'path' must be a non-empty str (got {self.path!r}).")
        check_name(f"{owner}: timestamp_field", self.timestamp_field)
        if self.created_timestamp_field is not None:
            check_name(f"{owner}: created_timestamp_field", self.created_timestamp_field)
        check_str(owner, "description", self.description)
        check_str(owner, "owner", self.owner)
        object.__setattr__(self, "tags", check_tags(owner, self.tags))
        set_location(self)

    def version_spec(self) -> dict[str, Any]:
        return {
            "type": "parquet",
            "name": self.name,
            "path": self.path,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
        }

    def to_spec(self) -> dict[str, Any]:
        return {**self.version_spec(), **metadata_spec(self)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ParquetSource:
        spec = {k: v for k, v in spec.items() if k != "type"}
        return cls(**spec)


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaSource:
    """A Kafka topic of JSON events parsed against ``schema``.

    ``bootstrap_servers`` defaults to the repo's ``kafka.bootstrap_servers``;
    it is deployment detail, so changing it does not make a new view version.
    ``allowed_lateness``: how far behind its partition's newest event time an event
    may arrive and still count; later ones go to the dead-letter topic.
    """

    kind: ClassVar[str] = "source"

    name: str
    topic: str
    timestamp_field: str
    schema: Sequence[Field]
    value_format: str = "json"
    allowed_lateness: timedelta = timedelta(minutes=5)
    # Input bounds (not part of the version: they guard against broken producers, they do
    # not define values). An event stamped further ahead of the consumer's clock, or
    # larger than max_event_bytes, is a dead letter ('future', 'too large').
    max_future_skew: timedelta = timedelta(minutes=5)
    max_event_bytes: int = 1_048_576
    bootstrap_servers: str | None = None
    batch_source: ParquetSource | None = None
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    location: SourceLocation | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name("KafkaSource", self.name)
        owner = f"KafkaSource '{self.name}'"
        if not isinstance(self.topic, str) or not self.topic:
            raise DefinitionError(f"{owner}: 'topic' must be a non-empty str (got {self.topic!r}).")
        if self.value_format != "json":
            raise DefinitionError(
                f"{owner}: value_format {self.value_format!r} is not supported; use 'json'."
            )
        schema = checked_schema(owner, self.schema)
        names = [f.name for f in schema]
        if self.timestamp_field not in names:
            raise DefinitionError(
                f"{owner}: timestamp_field '{self.timestamp_field}' is not in the schema "
                f"({', '.join(names)}). Add it as Field(name=..., dtype=UnixTimestamp)."
            )
        object.__setattr__(self, "schema", schema)
        if not isinstance(self.allowed_lateness, timedelta) or self.allowed_lateness < timedelta(0):
            raise DefinitionError(
                f"{owner}: 'allowed_lateness' must be a timedelta >= 0 (got "
                f"{self.allowed_lateness!r})."
            )
        if not isinstance(self.max_future_skew, timedelta) or self.max_future_skew < timedelta(0):
            raise DefinitionError(
                f"{owner}: 'max_future_skew' must be a timedelta >= 0 (got "
                f"{self.max_future_skew!r}); it bounds how far ahead of the consumer's clock "
                "an event time may be."
            )
        if type(self.max_event_bytes) is not int or self.max_event_bytes < 1:
            raise DefinitionError(
                f"{owner}: 'max_event_bytes' must be a positive int (got {self.max_event_bytes!r})."
            )
        if self.batch_source is not None and not isinstance(self.batch_source, ParquetSource):
            raise DefinitionError(
                f"{owner}: 'batch_source' must be a ParquetSource ({got(self.batch_source)})."
            )
        check_str(owner, "bootstrap_servers", self.bootstrap_servers)
        check_str(owner, "description", self.description)
        check_str(owner, "owner", self.owner)
        object.__setattr__(self, "tags", check_tags(owner, self.tags))
        set_location(self)

    def version_spec(self) -> dict[str, Any]:
        return {
            "type": "kafka",
            "name": self.name,
            "topic": self.topic,
            "timestamp_field": self.timestamp_field,
            "value_format": self.value_format,
            # Which events count (late ones do not) changes values: part of the version.
            "allowed_lateness_seconds": self.allowed_lateness.total_seconds(),
            "schema": [f.version_spec() for f in self.schema],
            "batch_source": self.batch_source.version_spec() if self.batch_source else None,
        }

    def to_spec(self) -> dict[str, Any]:
        return {
            **self.version_spec(),
            "schema": [f.to_spec() for f in self.schema],
            "batch_source": self.batch_source.to_spec() if self.batch_source else None,
            "bootstrap_servers": self.bootstrap_servers,
            "max_future_skew_seconds": self.max_future_skew.total_seconds(),
            "max_event_bytes": self.max_event_bytes,
            **metadata_spec(self),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> KafkaSource:
        spec = {k: v for k, v in spec.items() if k != "type"}
        spec["schema"] = [Field.from_spec(f) for f in spec["schema"]]
        if "allowed_lateness_seconds" in spec:
            spec["allowed_lateness"] = timedelta(seconds=spec.pop("allowed_lateness_seconds"))
        if "max_future_skew_seconds" in spec:
            spec["max_future_skew"] = timedelta(seconds=spec.pop("max_future_skew_seconds"))
        if spec.get("batch_source"):
            spec["batch_source"] = ParquetSource.from_spec(spec["batch_source"])
        return cls(**spec)


DataSource = ParquetSource | KafkaSource


def source_from_spec(spec: dict[str, Any]) -> DataSource:
    return KafkaSource.from_spec(spec) if spec["type"] == "kafka" else ParquetSource.from_spec(spec)
