"""Windowed aggregations declared on a streaming feature view.

The stream consumer maintains them incrementally and a Spark job computes
the same definition over the event log; both read this one declaration, so
training and serving agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from featurestore.definitions._base import check_name
from featurestore.dtypes import DType, Float64, Int64
from featurestore.errors import DefinitionError

FUNCTIONS = ("count", "sum", "mean", "min", "max", "last")


def window_label(window: timedelta) -> str:
    """'10m', '1h', '1d', ... : the suffix of default aggregation names."""
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True, kw_only=True)
class Aggregation:
    """``function`` over ``column`` in a sliding ``window`` keyed by the view's entities.

    ``column`` may be omitted for ``count``. The output feature is named
    ``name``, by default ``<column>_<function>_<window>`` (``count_<window>``
    for a count without a column), e.g. ``amount_sum_1h``.
    """

    function: str
    window: timedelta
    column: str | None = None
    name: str = None  # type: ignore[assignment]  # None means the default, set in __post_init__

    if TYPE_CHECKING:
        # What callers may pass; readers see ``name`` as set. Runtime uses the
        # dataclass-generated __init__.
        def __init__(
            self,
            *,
            function: str,
            window: timedelta,
            column: str | None = None,
            name: str | None = None,
        ) -> None: ...

    def __post_init__(self) -> None:
        if self.function not in FUNCTIONS:
            raise DefinitionError(
                f"Aggregation function {self.function!r} is not supported; "
                f"use one of {', '.join(FUNCTIONS)}."
            )
        if not isinstance(self.window, timedelta) or self.window.total_seconds() < 1:
            raise DefinitionError(
                f"Aggregation {self.function}: window must be a timedelta of at least 1 second "
                f"(got {self.window!r})."
            )
        if self.column is None and self.function != "count":
            raise DefinitionError(f"Aggregation {self.function} needs a column.")
        if self.column is not None:
            check_name(f"Aggregation {self.function}: column", self.column)
        if self.name is None:
            prefix = self.column + "_" if self.column else ""
            object.__setattr__(self, "name", f"{prefix}{self.function}_{window_label(self.window)}")
        check_name("Aggregation name", self.name)

    def output_dtype(self, input_dtype: DType | None) -> DType:
        if self.function == "count":
            return Int64
        if self.function in ("sum", "mean"):
            return Float64
        return input_dtype if input_dtype is not None else Float64

    def to_spec(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "column": self.column,
            "window_seconds": int(self.window.total_seconds()),
            "name": self.name,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Aggregation:
        return cls(
            function=spec["function"],
            column=spec.get("column"),
            window=timedelta(seconds=spec["window_seconds"]),
            name=spec["name"],
        )
