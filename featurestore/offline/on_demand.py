"""On-demand features of a training set: computed from the joined rows with the code a
lookup runs (``online/on_demand.py``), so training and serving cannot disagree.

Stored inputs come from the point-in-time join (hidden ones, not asked for, are dropped
after); request fields come from the entity table's columns of the same names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from featurestore.offline.join import hidden_column
from featurestore.online.on_demand import OnDemandPlan, request_columns, run_step


def add_on_demand(
    joined: pa.Table,
    plan: OnDemandPlan,
    names: Sequence[str],
    input_columns: Sequence[str],
) -> tuple[pa.Table, dict[str, int]]:
    """The training set: ``input_columns`` then the requested features (``names``, in
    request order), on-demand ones computed; and the failed values per view version
    (null in the table)."""
    n = joined.num_rows
    width = len(names)
    cache: dict[str, list[Any]] = {}

    def values(column: str) -> list[Any]:
        found = cache.get(column)
        if found is None:
            found = cache[column] = joined.column(column).to_pylist()
        return found

    def request(column: str) -> list[Any] | None:
        return values(column) if column in input_columns else None

    computed: dict[int, pa.Array] = {}
    failures: dict[str, int] = {}
    for step in plan.steps:
        inputs = {
            name: values(names[c] if c < width else hidden_column(c - width))
            for name, c in step.inputs
        }
        inputs.update(request_columns(step, request, "The entity input"))
        result = run_step(step, inputs, n)
        for k, (_feature, o, dtype) in enumerate(step.outputs):
            computed[o] = pa.array(result.values[k], type=dtype.arrow_type())
            if result.errors is not None:
                failed = sum(m is not None for m in result.errors[k])
                if failed:
                    failures[step.label] = failures.get(step.label, 0) + failed
    out = joined.select(list(input_columns))
    for o, name in enumerate(names):
        out = out.append_column(name, computed[o] if o in computed else joined.column(name))
    return out, failures
