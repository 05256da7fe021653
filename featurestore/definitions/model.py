"""Model: a consumer of features, with an owner and a purpose that policies read."""

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
from featurestore.definitions.feature_service import FeatureService
from featurestore.errors import DefinitionError


@dataclass(frozen=True, slots=True, kw_only=True)
class Model:
    """A model and the feature services it consumes.

    When registered, the model is pinned to the view versions its features
    resolve to; online lookups for it read those versions until it is
    re-registered (``featurestore promote MODEL``) or its definition changes.
    """

    kind: ClassVar[str] = "model"

    name: str
    feature_services: Sequence[FeatureService | str]
    purpose: str
    owner: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    location: SourceLocation | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name("Model", self.name)
        owner = f"Model '{self.name}'"
        services = tuple(self.feature_services)
        if not services or not all(isinstance(s, FeatureService | str) for s in services):
            raise DefinitionError(
                f"{owner}: 'feature_services' must be a non-empty list of FeatureService "
                "objects or names."
            )
        object.__setattr__(self, "feature_services", services)
        for name in ("purpose", "owner"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise DefinitionError(
                    f"{owner}: '{name}' is required (policies and audits use it), got {value!r}."
                )
        check_str(owner, "description", self.description)
        object.__setattr__(self, "tags", check_tags(owner, self.tags))
        set_location(self)

    @property
    def service_names(self) -> list[str]:
        return [s if isinstance(s, str) else s.name for s in self.feature_services]

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "feature_services": self.service_names,
            "purpose": self.purpose,
            **metadata_spec(self),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Model:
        return cls(**spec)
