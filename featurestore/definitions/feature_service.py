"""FeatureService: a named set of feature references that a model consumes."""

from __future__ import annotations

from collections import Counter
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
from featurestore.definitions.feature_view import FeatureProjection, FeatureView
from featurestore.definitions.on_demand import OnDemandFeatureView
from featurestore.errors import DefinitionError
from featurestore.references import FeatureRef, parse_reference


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureService:
    """Features given as views (all their features), ``view[["a", "b"]]`` or references.

    References may pin a version (``view@v1:feature``); unpinned ones follow the
    view's latest version when a model consuming the service is registered.
    """

    kind: ClassVar[str] = "feature_service"

    name: str
    features: Sequence[FeatureView | OnDemandFeatureView | FeatureProjection | str]
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    location: SourceLocation | None = field(default=None, compare=False, repr=False)
    refs: tuple[FeatureRef, ...] = field(init=False, compare=False, repr=False, default=())

    def __post_init__(self) -> None:
        check_name("FeatureService", self.name)
        owner = f"FeatureService '{self.name}'"
        refs: list[FeatureRef] = []
        for item in self.features:
            if isinstance(item, FeatureView | OnDemandFeatureView):
                refs.extend(FeatureRef(item.name, f) for f in item.feature_names)
            elif isinstance(item, FeatureProjection):
                refs.extend(FeatureRef(item.view, f) for f in item.features)
            elif isinstance(item, str):
                refs.append(parse_reference(item))
            else:
                raise DefinitionError(
                    f"{owner}: features must be FeatureViews, OnDemandFeatureViews, view[[...]] "
                    "projections or "
                    f"'view:feature' strings (got {item!r})."
                )
        if not refs:
            raise DefinitionError(f"{owner}: 'features' must not be empty.")
        texts = tuple(str(r) for r in refs)
        if len(set(texts)) != len(texts):
            dupes = sorted(r for r, n in Counter(texts).items() if n > 1)
            raise DefinitionError(f"{owner}: features listed twice: {dupes}.")
        # The references parsed once, here: plans, checks and servers read them per model.
        object.__setattr__(self, "features", texts)
        object.__setattr__(self, "refs", tuple(refs))
        check_str(owner, "description", self.description)
        check_str(owner, "owner", self.owner)
        object.__setattr__(self, "tags", check_tags(owner, self.tags))
        set_location(self)

    @property
    def references(self) -> tuple[str, ...]:
        return self.features  # type: ignore[return-value]

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "features": list(self.features), **metadata_spec(self)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> FeatureService:
        return cls(**spec)
