"""Declarative data expectations on a feature view.

They are plain values here so that definitions stay light; batch jobs turn
them into Great Expectations checks and the stream consumer checks them per
event. ``mostly`` is the fraction of rows that must pass, as in Great
Expectations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from featurestore.definitions._base import check_name
from featurestore.errors import DefinitionError

# Our kind -> the Great Expectations expectation it becomes.
GE_TYPES = {
    "not_null": "expect_column_values_to_not_be_null",
    "between": "expect_column_values_to_be_between",
    "in_set": "expect_column_values_to_be_in_set",
    "match_regex": "expect_column_values_to_match_regex",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    type: str
    column: str
    min_value: float | None = None
    max_value: float | None = None
    values: tuple[Any, ...] | None = None
    regex: str | None = None
    mostly: float = 1.0

    def __post_init__(self) -> None:
        if self.type not in GE_TYPES:
            raise DefinitionError(
                f"Unknown expectation type {self.type!r}; use one of {', '.join(GE_TYPES)}."
            )
        check_name(f"Expectation {self.type}: column", self.column)
        if not 0.0 < float(self.mostly) <= 1.0:
            raise DefinitionError(
                f"Expectation {self.type} on '{self.column}': mostly must be in (0, 1] "
                f"(got {self.mostly!r})."
            )
        if self.type == "between":
            if self.min_value is None and self.max_value is None:
                raise DefinitionError(
                    f"expect_between('{self.column}') needs min_value, max_value or both."
                )
            if (
                self.min_value is not None
                and self.max_value is not None
                and self.min_value > self.max_value
            ):
                raise DefinitionError(
                    f"expect_between('{self.column}'): min_value {self.min_value} is greater "
                    f"than max_value {self.max_value}."
                )
        if self.type == "in_set":
            if not self.values:
                raise DefinitionError(f"expect_in_set('{self.column}') needs a non-empty values.")
            object.__setattr__(self, "values", tuple(self.values))
        if self.type == "match_regex" and not self.regex:
            raise DefinitionError(f"expect_match_regex('{self.column}') needs a regex.")

    def describe(self) -> str:
        extra = {
            "not_null": "",
            "between": f" in [{self.min_value}, {self.max_value}]",
            "in_set": f" in {list(self.values or ())}",
            "match_regex": f" ~ /{self.regex}/",
        }[self.type]
        mostly = f" (mostly {self.mostly})" if self.mostly < 1.0 else ""
        return f"{self.column} {self.type}{extra}{mostly}"

    def to_spec(self) -> dict[str, Any]:
        spec = {
            "type": self.type,
            "column": self.column,
            "min_value": self.min_value,
            "max_value": self.max_value,
            "values": list(self.values) if self.values is not None else None,
            "regex": self.regex,
            "mostly": self.mostly,
        }
        return {k: v for k, v in spec.items() if v is not None}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Expectation:
        return cls(**spec)


def expect_not_null(column: str, *, mostly: float = 1.0) -> Expectation:
    return Expectation(type="not_null", column=column, mostly=mostly)


def expect_between(
    column: str,
    min_value: float | None = None,
    max_value: float | None = None,
    *,
    mostly: float = 1.0,
) -> Expectation:
    return Expectation(
        type="between", column=column, min_value=min_value, max_value=max_value, mostly=mostly
    )


def expect_in_set(column: str, values: Sequence[Any], *, mostly: float = 1.0) -> Expectation:
    return Expectation(type="in_set", column=column, values=tuple(values), mostly=mostly)


def expect_match_regex(column: str, regex: str, *, mostly: float = 1.0) -> Expectation:
    return Expectation(type="match_regex", column=column, regex=regex, mostly=mostly)
