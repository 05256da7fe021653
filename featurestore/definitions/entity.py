"""Entity: the thing features describe, identified by one join key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from featurestore.definitions._base import (
    SourceLocation,
    check_name,
    check_str,
    check_tags,
    metadata_spec,
    set_location,
)
from featurestore.dtypes import DType, String, parse_dtype


@dataclass(frozen=True, slots=True, kw_only=True)
class Entity:
    """An entity such as a user or a merchant.

    ``join_key`` is the column that identifies it in sources, entity inputs and
    lookups (defaults to the entity's name, as in Feast). ``dtype`` is the key's
    type: lookups with a key of another type are refused rather than silently
    missing in Redis.
    """

    kind: ClassVar[str] = "entity"

    name: str
    # join_key None means the entity's name; a dtype spelling is parsed (both in __post_init__).
    join_key: str = None  # type: ignore[assignment]  # the default is normalized in __post_init__
    dtype: DType = String
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    location: SourceLocation | None = field(default=None, compare=False, repr=False)

    if TYPE_CHECKING:
        # What callers may pass; readers see the normalized field types above.
        # Runtime uses the dataclass-generated __init__.
        def __init__(
            self,
            *,
            name: str,
            join_key: str | None = None,
            dtype: DType | str = ...,
            description: str = "",
            owner: str = "",
            tags: dict[str, str] = ...,
            location: SourceLocation | None = None,
        ) -> None: ...

    def __post_init__(self) -> None:
        check_name("Entity", self.name)
        owner = f"Entity '{self.name}'"
        join_key = self.join_key if self.join_key is not None else self.name
        check_name(f"{owner}: join_key", join_key)
        object.__setattr__(self, "join_key", join_key)
        object.__setattr__(self, "dtype", parse_dtype(self.dtype, context=f"{owner}: dtype"))
        check_str(owner, "description", self.description)
        check_str(owner, "owner", self.owner)
        object.__setattr__(self, "tags", check_tags(owner, self.tags))
        set_location(self)

    def version_spec(self) -> dict[str, Any]:
        return {"name": self.name, "join_key": self.join_key, "dtype": str(self.dtype)}

    def to_spec(self) -> dict[str, Any]:
        return {**self.version_spec(), **metadata_spec(self)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Entity:
        return cls(**spec)
