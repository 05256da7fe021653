"""DriftMonitor: thresholds for comparing served features with training data.

PSI for numbers, Jensen-Shannon distance for categories, the change in null
rate, and the age of served values. Each measure has a ``warn`` and a
``drift`` threshold; status is the worst measure over the watched features.
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
from featurestore.definitions.model import Model
from featurestore.errors import DefinitionError
from featurestore.references import parse_reference

_THRESHOLDS = ("psi", "js", "null_rate")


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftMonitor:
    kind: ClassVar[str] = "drift_monitor"

    name: str
    model: Model | str
    features: Sequence[str] = ()  # references; empty means every feature of the model
    psi_warn: float = 0.1
    psi_drift: float = 0.25
    js_warn: float = 0.1
    js_drift: float = 0.2
    null_rate_warn: float = 0.05
    null_rate_drift: float = 0.2
    max_staleness: timedelta | None = None
    sample_rate: float = 0.01
    window: timedelta = timedelta(hours=1)
    min_samples: int = 500
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    location: SourceLocation | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name("DriftMonitor", self.name)
        owner = f"DriftMonitor '{self.name}'"
        if not isinstance(self.model, Model | str):
            raise DefinitionError(
                f"{owner}: 'model' must be a Model or a model name ({got(self.model)})."
            )
        object.__setattr__(self, "features", tuple(str(parse_reference(f)) for f in self.features))
        for measure in _THRESHOLDS:
            warn, drift = getattr(self, f"{measure}_warn"), getattr(self, f"{measure}_drift")
            for label, value in ((f"{measure}_warn", warn), (f"{measure}_drift", drift)):
                if not isinstance(value, int | float) or value < 0:
                    raise DefinitionError(
                        f"{owner}: '{label}' must be a non-negative number (got {value!r})."
                    )
            if warn > drift:
                raise DefinitionError(
                    f"{owner}: {measure}_warn ({warn}) must not exceed {measure}_drift ({drift})."
                )
        if not 0.0 < self.sample_rate <= 1.0:
            raise DefinitionError(
                f"{owner}: 'sample_rate' must be in (0, 1] (got {self.sample_rate!r})."
            )
        if not isinstance(self.window, timedelta) or self.window <= timedelta(0):
            raise DefinitionError(
                f"{owner}: 'window' must be a positive timedelta ({got(self.window)})."
            )
        if self.max_staleness is not None and (
            not isinstance(self.max_staleness, timedelta) or self.max_staleness <= timedelta(0)
        ):
            raise DefinitionError(
                f"{owner}: 'max_staleness' must be a positive timedelta or None "
                f"({got(self.max_staleness)})."
            )
        if not isinstance(self.min_samples, int) or self.min_samples < 1:
            raise DefinitionError(
                f"{owner}: 'min_samples' must be a positive int ({got(self.min_samples)})."
            )
        check_str(owner, "description", self.description)
        check_str(owner, "owner", self.owner)
        object.__setattr__(self, "tags", check_tags(owner, self.tags))
        set_location(self)

    @property
    def model_name(self) -> str:
        return self.model if isinstance(self.model, str) else self.model.name

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_name,
            "features": list(self.features),
            **{
                f"{m}_{lvl}": getattr(self, f"{m}_{lvl}")
                for m in _THRESHOLDS
                for lvl in ("warn", "drift")
            },
            "max_staleness_seconds": (
                int(self.max_staleness.total_seconds()) if self.max_staleness else None
            ),
            "sample_rate": self.sample_rate,
            "window_seconds": int(self.window.total_seconds()),
            "min_samples": self.min_samples,
            **metadata_spec(self),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> DriftMonitor:
        spec = dict(spec)
        staleness = spec.pop("max_staleness_seconds", None)
        window = spec.pop("window_seconds")
        return cls(
            **spec,
            max_staleness=timedelta(seconds=staleness) if staleness else None,
            window=timedelta(seconds=window),
        )
