"""Reference profiles: what a model saw in training, per feature, kept to compare serving with.

A numeric feature keeps its quantile cut points (deciles, duplicates dropped for discrete
values) and the fraction of values in each bin; a categorical one its most frequent values'
fractions (the rest under ``__other__``); every feature its count, null count and null rate.
Other types (timestamps, arrays, bytes) keep counts only. Profiles are computed from what
the model was given: a masked feature is profiled masked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

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
    edges: list[float] = field(default_factory=list)  # numeric: cut points
    fractions: list[float] = field(default_factory=list)  # numeric: per bin (non-null values)
    categories: dict[str, float] = field(default_factory=dict)  # categorical: value -> fraction
    mean: float | None = None
    min: float | None = None
    max: float | None = None

    @property
    def null_rate(self) -> float:
        return self.nulls / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureProfile:
        return cls(**data)


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
    import pyarrow as pa
    import pyarrow.compute as pc

    count = len(column)
    nulls = column.null_count
    kind = kind_of(column.type)
    values = column.drop_null() if nulls else column
    if kind == NUMERIC and len(values):
        import numpy as np

        floats = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        floats = floats[~np.isnan(floats)]
        if len(floats) == 0:
            return FeatureProfile(feature, kind, count, nulls)
        # Bins from a sample of a big column: a reference needs shares to a fraction of a
        # percent, not exact quantiles, and a training-set build should not pay a sort.
        sample = floats
        if len(floats) > SAMPLE:
            sample = floats[np.random.default_rng(0).integers(0, len(floats), SAMPLE)]
        edges = sorted(set(np.quantile(sample, QUANTILES).tolist()))
        counts = np.bincount(np.searchsorted(edges, sample, side="right"), minlength=len(edges) + 1)
        return FeatureProfile(
            feature,
            kind,
            count,
            nulls,
            edges=edges,
            fractions=(counts / len(sample)).tolist(),
            mean=float(floats.mean()),
            min=float(floats.min()),
            max=float(floats.max()),
        )
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


def profile_table(table: pa.Table, columns: dict[str, str]) -> list[FeatureProfile]:
    """Profiles of ``columns`` (output column -> ``view@vN:feature``) of ``table``."""
    return [profile_column(ref, table.column(name)) for name, ref in columns.items()]
