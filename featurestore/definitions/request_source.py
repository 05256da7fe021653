"""RequestSource: fields a caller sends with each lookup, for on-demand views.

As in Feast: the values are not stored anywhere; an online lookup takes them from its
entity rows, a training set from the entity table's columns of the same names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from featurestore.definitions._base import (
    SourceLocation,
    check_name,
    check_str,
    check_tags,
    metadata_spec,
    set_location,
)
from featurestore.definitions.field import Field, checked_schema
from featurestore.errors import DefinitionError

# Columns every entity row or table may carry for other reasons: a request field may not
# take their names.
RESERVED = ("event_timestamp", "created_timestamp")


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestSource:
    """Request fields, each with a dtype; validated on every lookup (a missing or mistyped
    field is refused, naming it)."""

    kind: ClassVar[str] = "source"

    name: str
    schema: Sequence[Field]
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    location: SourceLocation | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name("RequestSource", self.name)
        owner = f"RequestSource '{self.name}'"
        schema = checked_schema(owner, self.schema)
        names = [f.name for f in schema]
        reserved = sorted(set(RESERVED) & set(names))
        if reserved:
            raise DefinitionError(
                f"{owner}: {reserved} name the entity rows' timestamps; rename the field."
            )
        for f in schema:
            if f.dtype.name in ("timestamp", "array<float32>"):
                raise DefinitionError(
                    f"{owner}: field '{f.name}' is {f.dtype}; request fields are int32, int64, "
                    "float32, float64, string, bytes or bool (send times as int64 micros)."
                )
        object.__setattr__(self, "schema", schema)
        check_str(owner, "description", self.description)
        check_str(owner, "owner", self.owner)
        object.__setattr__(self, "tags", check_tags(owner, self.tags))
        set_location(self)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.schema]

    def version_spec(self) -> dict[str, Any]:
        return {
            "type": "request",
            "name": self.name,
            "schema": [f.version_spec() for f in self.schema],
        }

    def to_spec(self) -> dict[str, Any]:
        return {
            **self.version_spec(),
            "schema": [f.to_spec() for f in self.schema],
            **metadata_spec(self),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> RequestSource:
        spec = {k: v for k, v in spec.items() if k != "type"}
        spec["schema"] = [Field.from_spec(f) for f in spec["schema"]]
        return cls(**spec)
