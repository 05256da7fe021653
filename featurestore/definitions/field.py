"""Field: a named, typed column of a feature view or a source schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featurestore.definitions._base import check_name, check_str, check_tags, first_not, got
from featurestore.dtypes import DType, parse_dtype
from featurestore.errors import DefinitionError


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """A feature or source column. Field tags (for example ``pii``) feed policies."""

    name: str
    dtype: DType  # a spelling such as "float32" is accepted and parsed in __post_init__
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    if TYPE_CHECKING:
        # What callers may pass (user repos spell dtypes as strings); readers see the
        # normalized field types above. Runtime uses the dataclass-generated __init__.
        def __init__(
            self,
            *,
            name: str,
            dtype: DType | str,
            description: str = "",
            tags: dict[str, str] = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        check_name("Field", self.name)
        owner = f"Field '{self.name}'"
        object.__setattr__(self, "dtype", parse_dtype(self.dtype, context=f"{owner}: dtype"))
        check_str(owner, "description", self.description)
        object.__setattr__(self, "tags", check_tags(owner, self.tags))

    def version_spec(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": str(self.dtype)}

    def to_spec(self) -> dict[str, Any]:
        return {**self.version_spec(), "description": self.description, "tags": dict(self.tags)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Field:
        return cls(**spec)


def checked_schema(owner: str, schema: object, *, what: str = "fields") -> tuple[Field, ...]:
    """A non-empty list of Field with unique names (DefinitionError naming ``owner``)."""
    fields = tuple(schema) if isinstance(schema, list | tuple) else ()
    if not fields or not all(isinstance(f, Field) for f in fields):
        raise DefinitionError(
            f"{owner}: 'schema' must be a non-empty list of Field "
            f"({got(first_not(Field, fields) if fields else schema)})."
        )
    names = [f.name for f in fields]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DefinitionError(f"{owner}: schema has duplicate {what} {dupes}.")
    return fields
