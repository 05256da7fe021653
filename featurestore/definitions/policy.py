"""Policy: a rule over feature and model attributes with an effect.

A rule matches a (feature, model) pair when every condition given in
``features`` and in ``models`` holds; an empty condition matches anything.
Effects: ``allow``, ``deny`` and ``mask`` (serve a keyed hash or a redacted
value instead of the raw one). Deny wins over mask, mask over allow; a pair
no rule matches follows the project's default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from featurestore.definitions._base import (
    SourceLocation,
    check_name,
    check_str,
    check_tags,
    got,
    set_location,
)
from featurestore.errors import DefinitionError

EFFECTS = ("allow", "deny", "mask")
MASKS = ("hash", "redact")


def _names(owner: str, field_name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise DefinitionError(f"{owner}: '{field_name}' must be a list of str (got {value!r}).")
    return tuple(sorted(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureMatch:
    """Which features a policy is about. ``tags`` match when each listed tag has that value."""

    views: Sequence[str] = ()
    features: Sequence[str] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    owners: Sequence[str] = ()

    def __post_init__(self) -> None:
        for name in ("views", "features", "owners"):
            object.__setattr__(self, name, _names("FeatureMatch", name, getattr(self, name)))
        object.__setattr__(self, "tags", check_tags("FeatureMatch", self.tags))

    def matches(self, view: str, feature: str, tags: Mapping[str, str], owner: str) -> bool:
        return (
            (not self.views or view in self.views)
            and (not self.features or feature in self.features)
            and all(tags.get(k) == v for k, v in self.tags.items())
            and (not self.owners or owner in self.owners)
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "views": list(self.views),
            "features": list(self.features),
            "tags": dict(self.tags),
            "owners": list(self.owners),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelMatch:
    """Which models a policy is about."""

    names: Sequence[str] = ()
    purposes: Sequence[str] = ()
    owners: Sequence[str] = ()

    def __post_init__(self) -> None:
        for name in ("names", "purposes", "owners"):
            object.__setattr__(self, name, _names("ModelMatch", name, getattr(self, name)))

    def matches(self, name: str, purpose: str, owner: str) -> bool:
        return (
            (not self.names or name in self.names)
            and (not self.purposes or purpose in self.purposes)
            and (not self.owners or owner in self.owners)
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "purposes": list(self.purposes),
            "owners": list(self.owners),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    kind: ClassVar[str] = "policy"

    name: str
    effect: str
    features: FeatureMatch = field(default_factory=FeatureMatch)
    models: ModelMatch = field(default_factory=ModelMatch)
    mask: str = "hash"
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    location: SourceLocation | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name("Policy", self.name)
        owner = f"Policy '{self.name}'"
        if self.effect not in EFFECTS:
            raise DefinitionError(
                f"{owner}: effect must be one of {', '.join(EFFECTS)} (got {self.effect!r})."
            )
        if self.mask not in MASKS:
            raise DefinitionError(
                f"{owner}: mask must be one of {', '.join(MASKS)} (got {self.mask!r})."
            )
        if not isinstance(self.features, FeatureMatch):
            raise DefinitionError(
                f"{owner}: 'features' must be a FeatureMatch(...) ({got(self.features)})."
            )
        if not isinstance(self.models, ModelMatch):
            raise DefinitionError(
                f"{owner}: 'models' must be a ModelMatch(...) ({got(self.models)})."
            )
        check_str(owner, "description", self.description)
        check_str(owner, "owner", self.owner)
        object.__setattr__(self, "tags", check_tags(owner, self.tags))
        set_location(self)

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "effect": self.effect,
            "features": self.features.to_spec(),
            "models": self.models.to_spec(),
            "mask": self.mask,
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Policy:
        return cls(
            **{
                **spec,
                "features": FeatureMatch(**spec["features"]),
                "models": ModelMatch(**spec["models"]),
            }
        )
