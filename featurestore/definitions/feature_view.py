"""FeatureView: a versioned group of features computed from one source.

A view's *version* is derived from what changes its values: its schema
(names and dtypes), transformation, source, entities and aggregations.
Owner, description, tags, TTL and expectations change metadata only; they
never make a new version (see DESIGN.md, "Versions").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import orjson

from featurestore.definitions._base import (
    SourceLocation,
    check_name,
    check_str,
    check_tags,
    first_not,
    got,
    metadata_spec,
    set_location,
)
from featurestore.definitions.aggregation import Aggregation
from featurestore.definitions.entity import Entity
from featurestore.definitions.expectations import Expectation
from featurestore.definitions.field import Field
from featurestore.definitions.sources import DataSource, KafkaSource, ParquetSource
from featurestore.definitions.transformation import (
    RegisteredTransformation,
    transformation_from_spec,
    transformation_spec,
)
from featurestore.errors import DefinitionError, did_you_mean


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _seconds(value: timedelta) -> int | float:
    """Whole seconds as an int (stable specs), sub-second TTLs kept exactly as a float."""
    seconds = value.total_seconds()
    return int(seconds) if seconds.is_integer() else seconds


def fingerprint(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class FeatureProjection:
    """A subset of a view's features, as in ``view[["a", "b"]]``, for feature services."""

    view: str
    features: tuple[str, ...]

    def references(self) -> list[str]:
        return [f"{self.view}:{f}" for f in self.features]


def projection(
    owner: str, view: str, available: list[str], features: str | Sequence[str]
) -> FeatureProjection:
    """``view[["a", "b"]]``: the named features of a view (DefinitionError for others)."""
    names = (features,) if isinstance(features, str) else tuple(features)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise DefinitionError(
            f"{owner} has no feature '{unknown[0]}'.{did_you_mean(unknown[0], available)} "
            f"Its features: {', '.join(available)}."
        )
    return FeatureProjection(view, names)


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureView:
    """Features of one or more entities, read from ``source``.

    ``entities`` and ``source`` may be given as objects or by name; the repo
    loader resolves names. ``ttl`` bounds how old a value may be at lookup
    and join time; ``None`` means no bound. With ``aggregations``, the output
    features are the aggregations' outputs and ``schema`` may be omitted.
    """

    kind: ClassVar[str] = "feature_view"

    name: str
    entities: Sequence[Entity | str]
    source: DataSource | str
    schema: Sequence[Field] = ()
    ttl: timedelta | None = None
    transformation: Callable[..., Any] | RegisteredTransformation | None = None
    aggregations: Sequence[Aggregation] = ()
    expectations: Sequence[Expectation] = ()
    online: bool = True
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    location: SourceLocation | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name("FeatureView", self.name)
        owner = f"FeatureView '{self.name}'"
        entities = tuple(self.entities)
        if not entities or not all(isinstance(e, Entity | str) for e in entities):
            raise DefinitionError(
                f"{owner}: 'entities' must be a non-empty list of Entity objects or names."
            )
        object.__setattr__(self, "entities", entities)
        if not isinstance(self.source, ParquetSource | KafkaSource | str):
            raise DefinitionError(
                f"{owner}: 'source' must be a ParquetSource, a KafkaSource or a source name "
                f"(got {type(self.source).__name__})."
            )
        if self.ttl is not None and (
            not isinstance(self.ttl, timedelta) or self.ttl <= timedelta(0)
        ):
            raise DefinitionError(
                f"{owner}: 'ttl' must be a positive timedelta or None (got {self.ttl!r})."
            )
        if self.transformation is not None and not callable(self.transformation):
            raise DefinitionError(
                f"{owner}: 'transformation' must be a function ({got(self.transformation)})."
            )
        aggregations = tuple(self.aggregations)
        if not all(isinstance(a, Aggregation) for a in aggregations):
            raise DefinitionError(
                f"{owner}: 'aggregations' must be a list of Aggregation "
                f"({got(first_not(Aggregation, aggregations))})."
            )
        object.__setattr__(self, "aggregations", aggregations)
        object.__setattr__(self, "schema", self._checked_schema(owner))
        expectations = tuple(self.expectations)
        if not all(isinstance(e, Expectation) for e in expectations):
            raise DefinitionError(
                f"{owner}: 'expectations' must be a list built with expect_not_null, "
                "expect_between, expect_in_set or expect_match_regex."
            )
        object.__setattr__(self, "expectations", expectations)
        check_str(owner, "description", self.description)
        check_str(owner, "owner", self.owner)
        object.__setattr__(self, "tags", check_tags(owner, self.tags))
        set_location(self)

    def _checked_schema(self, owner: str) -> tuple[Field, ...]:
        schema = tuple(self.schema)
        if not all(isinstance(f, Field) for f in schema):
            raise DefinitionError(
                f"{owner}: 'schema' must be a list of Field ({got(first_not(Field, schema))})."
            )
        if self.aggregations:
            schema = self._with_aggregation_outputs(owner, schema)
        if not schema:
            raise DefinitionError(f"{owner}: 'schema' must list at least one feature Field.")
        names = [f.name for f in schema]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DefinitionError(f"{owner}: schema has duplicate features {dupes}.")
        reserved = {"event_timestamp", "created_timestamp"} & set(names)
        if reserved:
            raise DefinitionError(
                f"{owner}: {sorted(reserved)} are reserved column names of the offline store; "
                "rename the feature."
            )
        return schema

    def _with_aggregation_outputs(self, owner: str, schema: tuple[Field, ...]) -> tuple[Field, ...]:
        """Derive the aggregation outputs; a listed field must agree with its derived dtype."""
        listed = {f.name: f for f in schema}
        source_types = {}
        if isinstance(self.source, KafkaSource):
            source_types = {f.name: f.dtype for f in self.source.schema}
        out = list(schema)
        for agg in self.aggregations:
            input_known = agg.column is None or agg.column in source_types
            derived = agg.output_dtype(source_types.get(agg.column) if agg.column else None)
            if agg.name in listed:
                depends_on_input = agg.function in ("min", "max", "last")
                if listed[agg.name].dtype != derived and (input_known or not depends_on_input):
                    raise DefinitionError(
                        f"{owner}: feature '{agg.name}' is listed as {listed[agg.name].dtype} "
                        f"but the {agg.function} aggregation produces {derived}. "
                        "Drop it from the schema or fix its dtype."
                    )
                continue
            out.append(Field(name=agg.name, dtype=derived))
        return tuple(out)

    # -- names and references -------------------------------------------------

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.schema]

    @property
    def entity_names(self) -> list[str]:
        return [e if isinstance(e, str) else e.name for e in self.entities]

    @property
    def source_name(self) -> str:
        return self.source if isinstance(self.source, str) else self.source.name

    @property
    def join_keys(self) -> list[str]:
        return [e.join_key for e in self.resolved_entities()]

    def resolved_entities(self) -> tuple[Entity, ...]:
        if any(isinstance(e, str) for e in self.entities):
            raise DefinitionError(
                f"FeatureView '{self.name}' refers to entities by name; load it through the "
                "feature repo or registry so they are resolved."
            )
        return self.entities  # type: ignore[return-value]

    def field(self, name: str) -> Field | None:
        return next((f for f in self.schema if f.name == name), None)

    def __getitem__(self, features: str | Sequence[str]) -> FeatureProjection:
        return projection(f"FeatureView '{self.name}'", self.name, self.feature_names, features)

    # -- specs ----------------------------------------------------------------

    def version_spec(self) -> dict[str, Any]:
        """The canonical form of everything that changes values; hashed into the version."""
        if isinstance(self.source, str):
            raise DefinitionError(
                f"FeatureView '{self.name}': source '{self.source}' is not resolved."
            )
        return {
            "entities": [e.version_spec() for e in self.resolved_entities()],
            "source": self.source.version_spec(),
            "schema": [f.version_spec() for f in self.schema],
            "transformation": (
                transformation_spec(self.transformation)["fingerprint"]
                if self.transformation is not None
                else None
            ),
            "aggregations": [a.to_spec() for a in self.aggregations],
        }

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entities": self.entity_names,
            "source": self.source_name,
            "schema": [f.to_spec() for f in self.schema],
            "ttl_seconds": _seconds(self.ttl) if self.ttl is not None else None,
            "transformation": (
                transformation_spec(self.transformation) if self.transformation else None
            ),
            "aggregations": [a.to_spec() for a in self.aggregations],
            "expectations": [e.to_spec() for e in self.expectations],
            "online": self.online,
            **metadata_spec(self),
        }

    @classmethod
    def from_spec(
        cls,
        spec: dict[str, Any],
        entities: dict[str, Entity] | None = None,
        sources: dict[str, DataSource] | None = None,
    ) -> FeatureView:
        """Rebuild from a spec; entities and sources are resolved when maps are given."""
        entities = entities or {}
        sources = sources or {}
        return cls(
            name=spec["name"],
            entities=[entities.get(n, n) for n in spec["entities"]],
            source=sources.get(spec["source"], spec["source"]),
            schema=[Field.from_spec(f) for f in spec["schema"]],
            ttl=(
                timedelta(seconds=spec["ttl_seconds"])
                if spec.get("ttl_seconds") is not None
                else None
            ),
            transformation=transformation_from_spec(spec.get("transformation")),
            aggregations=[Aggregation.from_spec(a) for a in spec.get("aggregations", [])],
            expectations=[Expectation.from_spec(e) for e in spec.get("expectations", [])],
            online=spec.get("online", True),
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=spec.get("tags", {}),
        )
