"""Feature references: ``view:feature`` (latest) and ``view@v2:feature`` (pinned)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from featurestore.errors import InvalidReferenceError

_REF = re.compile(
    r"^(?P<view>[A-Za-z_][A-Za-z0-9_]*)(?:@v(?P<version>[0-9]+))?:(?P<feature>[A-Za-z_][A-Za-z0-9_]*)$"
)


@dataclass(frozen=True, slots=True, order=True)
class FeatureRef:
    view: str
    feature: str
    version: int | None = None  # None: the view's latest active version

    def __str__(self) -> str:
        pin = f"@v{self.version}" if self.version is not None else ""
        return f"{self.view}{pin}:{self.feature}"

    def pinned(self, version: int) -> FeatureRef:
        return FeatureRef(self.view, self.feature, version)


def is_feature_reference(text: str) -> bool:
    return ":" in text


def parse_reference(text: object) -> FeatureRef:
    """Parse ``view:feature`` or ``view@vN:feature``; raise InvalidReferenceError otherwise."""
    if not isinstance(text, str):
        raise InvalidReferenceError(
            f"A feature reference must be a str like 'view:feature' (got {text!r})."
        )
    match = _REF.match(text.strip())
    if match is None:
        raise InvalidReferenceError(
            f"Cannot parse feature reference {text!r}. Use 'view:feature' for the latest "
            "version or 'view@v2:feature' to pin version 2."
        )
    version = match.group("version")
    if version is not None and int(version) < 1:
        raise InvalidReferenceError(f"Feature reference {text!r}: versions start at v1.")
    return FeatureRef(
        match.group("view"), match.group("feature"), int(version) if version else None
    )
