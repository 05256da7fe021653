"""Reference profiles: what a model saw in training, per feature, kept to compare serving with.

A numeric feature keeps its quantile cut points (deciles, duplicates dropped for discrete
values) and the fraction of values in each bin; a categorical one its most frequent values'
fractions (the rest under ``__other__``); every feature its count, null count and null rate.
Other types (timestamps, arrays, bytes) keep counts only. Profiles are computed from what
the model was given: a masked feature is profiled masked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from featurestore.drift.stats import OTHER

if TYPE_CHECKING:  # pyarrow only where profiles are built, not where they are read
    import pyarrow as pa

NUMERIC, CATEGORICAL, OTHER_KIND = "numeric", "categorical", "other"
QUANTILES = [i / 10 for i in range(1, 10)]
TOP_CATEGORIES = 50
SAMPLE = 200_000  # values a numeric profile's bins are taken from


@dataclass(frozen=True, slots=True)
class FeatureProfile:
    feature: str  # view@vN:feature
    kind: str  # numeric | categorical | other
    count: int
    nulls: int
    edges: list[float] = field(default_factory=list)  # numeric: cut points (ints for ints)
    fractions: list[float] = field(default_factory=list)  # numeric: per bin (finite values)
    categories: dict[str, float] = field(default_factory=dict)  # categorical: value -> fraction
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    non_finite: int = 0  # floats: NaN, +inf, -inf (not nulls, not binned)

    @property
    def null_rate(self) -> float:
        return self.nulls / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def usable(profile: dict[str, Any]) -> bool:
    """Whether a profile (as stored) has values to compare served ones with: some row that
    is neither null nor non-finite, and, for numbers, bins that fit their cut points."""
    values = profile["count"] - profile["nulls"] - profile.get("non_finite", 0)
    if values <= 0:
        return False
    if profile["kind"] == NUMERIC:
        return bool(profile["fractions"]) and len(profile["fractions"]) == len(profile["edges"]) + 1
    if profile["kind"] == CATEGORICAL:
        return bool(profile["categories"])
    return True


def kind_of(arrow_type: pa.DataType) -> str:
    import pyarrow as pa

    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return NUMERIC
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return CATEGORICAL
    if pa.types.is_boolean(arrow_type):
        return CATEGORICAL
    return OTHER_KIND


def category_key(value: Any) -> str:
    """How a categorical value is counted (booleans and strings alike, as served)."""
    return "true" if value is True else "false" if value is False else str(value)


def profile_column(feature: str, column: pa.Array | pa.ChunkedArray) -> FeatureProfile:
    import pyarrow.compute as pc

    count = len(column)
    nulls = column.null_count
    kind = kind_of(column.type)
    values = column.drop_null() if nulls else column
    if kind == NUMERIC and len(values):
        return _numeric(feature, count, nulls, values)
    if kind == CATEGORICAL and len(values):
        counts = pc.value_counts(values).to_pylist()
        counts.sort(key=lambda vc: (-vc["counts"], category_key(vc["values"])))
        n = len(values)
        categories = {
            category_key(vc["values"]): vc["counts"] / n for vc in counts[:TOP_CATEGORIES]
        }
        rest = sum(vc["counts"] for vc in counts[TOP_CATEGORIES:])
        if rest:
            categories[OTHER] = rest / n
        return FeatureProfile(feature, kind, count, nulls, categories=categories)
    return FeatureProfile(feature, kind, count, nulls)


def _numeric(feature: str, count: int, nulls: int, values: pa.Array) -> FeatureProfile:
    import numpy as np
    import pyarrow as pa

    if pa.types.is_integer(values.type):
        numbers = values.to_numpy(zero_copy_only=False)  # its own integer type: exact
        non_finite = 0
    else:
        numbers = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
        finite = np.isfinite(numbers)
        non_finite = int(len(numbers) - finite.sum())
        numbers = numbers[finite] if non_finite else numbers
    if len(numbers) == 0:
        return FeatureProfile(feature, NUMERIC, count, nulls, non_finite=non_finite)
    # Bins from a sample of a big column: a reference needs shares to a fraction of a
    # percent, not exact quantiles, and a training-set build should not pay a sort.
    sample = numbers
    if len(numbers) > SAMPLE:
        sample = numbers[np.random.default_rng(0).integers(0, len(numbers), SAMPLE)]
    # Integers: cut points that are values of the column (no interpolation, no float64),
    # so the monitor's comparisons with served ints are exact.
    method: Literal["inverted_cdf", "linear"] = (
        "inverted_cdf" if numbers.dtype.kind in "iu" else "linear"
    )
    edges = np.unique(np.quantile(sample, QUANTILES, method=method))
    counts = np.bincount(np.searchsorted(edges, sample, side="right"), minlength=len(edges) + 1)
    return FeatureProfile(
        feature,
        NUMERIC,
        count,
        nulls,
        edges=edges.tolist(),
        fractions=(counts / len(sample)).tolist(),
        # float64 sum of an int64 column: a mean is approximate anyway, and never overflows.
        mean=float(numbers.mean(dtype=np.float64)),
        min=numbers.min().item(),
        max=numbers.max().item(),
        non_finite=non_finite,
    )
