"""The on-demand step runner's precomputed parts keep their behaviour: output converters
and request checks (exact-type fast paths first), the event time of outputs (copied from
one record, or the latest of several) and a fresh row dict per row.

Pure functions over Python values: no service is involved.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from featurestore.definitions.function_code import function_code
from featurestore.dtypes import parse_dtype
from featurestore.errors import EntityInputError
from featurestore.online.on_demand import (
    CONVERTERS,
    ERROR,
    REQUEST_CHECKS,
    OnDemandPlan,
    OnDemandStep,
    request_values,
    run_step,
)
from featurestore.online.response import compute_on_demand

F64 = parse_dtype("float64")
I64 = parse_dtype("int64")


class Text(str):
    pass


def ratio(row: dict[str, Any]) -> dict[str, Any]:
    if row["b"] == 0:
        raise ZeroDivisionError("b is 0")
    return {"ratio": (row["a"] + row["amount"]) / row["b"]}


def grabby(row: dict[str, Any]) -> dict[str, Any]:
    seen = "extra" in row  # a function adding to its row must not see it on the next row
    row["extra"] = 1
    return {"ratio": 1.0 if seen else 0.0}


def step(fn: Any, *, one_record: bool) -> OnDemandStep:
    return OnDemandStep(
        label="r@v1",
        mode="python",
        singleton=True,
        code=function_code(fn, "test"),
        inputs=(("a", 0), ("b", 1)),
        requests=(("amount", F64, "txn"),),
        outputs=(("ratio", 2, F64),),
        one_record=one_record,
    )


def test_output_converters_keep_types_ranges_and_refusals() -> None:
    assert CONVERTERS["float64"](1.5, False) == 1.5
    got = CONVERTERS["float64"](np.float64(2.5), False)
    assert got == 2.5
    assert type(got) is float
    assert type(CONVERTERS["float64"](3, False)) is float
    with pytest.raises(TypeError, match="bool"):
        CONVERTERS["float64"](True, False)
    with pytest.raises(TypeError, match="str"):
        CONVERTERS["float64"]("1.5", False)
    assert CONVERTERS["int64"](7, False) == 7
    got = CONVERTERS["int64"](np.int64(8), False)
    assert got == 8
    assert type(got) is int
    with pytest.raises(ValueError, match="out of range for int64"):
        CONVERTERS["int64"](2**63, False)
    with pytest.raises(ValueError, match="out of range for int32"):
        CONVERTERS["int32"](2**31, False)
    with pytest.raises(TypeError, match="bool"):
        CONVERTERS["int64"](False, False)
    with pytest.raises(TypeError):
        CONVERTERS["int64"](2.0, False)  # whole floats only from pandas
    assert CONVERTERS["int64"](2.0, True) == 2
    got = CONVERTERS["string"](Text("x"), False)
    assert got == "x"
    assert type(got) is str
    with pytest.raises(TypeError):
        CONVERTERS["string"](b"x", False)


def test_request_checks_keep_nan_and_refuse_wrong_types() -> None:
    nan = REQUEST_CHECKS["float64"](math.nan)
    assert math.isnan(nan)
    assert REQUEST_CHECKS["float64"](math.inf) == math.inf
    got = REQUEST_CHECKS["float64"](np.float64(1.25))
    assert got == 1.25
    assert type(got) is float
    assert REQUEST_CHECKS["float64"](2) == 2.0
    assert type(REQUEST_CHECKS["float64"](2)) is float
    with pytest.raises(TypeError, match="bool"):
        REQUEST_CHECKS["float64"](True)
    with pytest.raises(TypeError, match="float"):
        REQUEST_CHECKS["int64"](1.0)
    with pytest.raises(ValueError, match="out of range"):
        REQUEST_CHECKS["int64"](2**64)
    assert REQUEST_CHECKS["int64"](5) == 5


def test_request_values_name_the_row_and_field() -> None:
    s = step(ratio, one_record=True)
    assert request_values(s, [{"amount": 1}, {"amount": None}]) == {"amount": [1.0, None]}
    with pytest.raises(EntityInputError, match="Entity row 1 has no request field 'amount'"):
        request_values(s, [{"amount": 1.0}, {}])
    with pytest.raises(EntityInputError, match=r"Entity row 0: request field 'amount'.*float64"):
        request_values(s, [{"amount": "12"}])
    with pytest.raises(EntityInputError, match=r"Entity row 2: request field 'amount'.*bool"):
        request_values(s, [{"amount": 1.0}, {"amount": None}, {"amount": True}])


def compute(s: OnDemandStep, events: list[list[int | None]]) -> tuple[Any, ...]:
    values: list[list[Any]] = [[1.0, 2.0, 3.0], [2.0, 0.0, 4.0], [None] * 3]
    statuses = [["present"] * 3, ["present"] * 3, ["missing"] * 3]
    plan = SimpleNamespace(on_demand=OnDemandPlan((s,), (), frozenset({2})))
    requests = {"amount": [1.0, 1.0, 1.0]}
    errors = compute_on_demand(plan, 3, values, statuses, events, requests)  # type: ignore[arg-type]
    return values[2], statuses[2], events[2], errors


def test_event_time_is_the_latest_input_unless_one_record() -> None:
    several = step(ratio, one_record=False)
    values, statuses, events, errors = compute(several, [[5, None, 9], [7, None, 3], [None] * 3])
    assert values == [1.0, None, 1.0]
    assert statuses == ["present", ERROR, "present"]
    assert events == [7, None, 9]
    assert errors is not None
    assert "ZeroDivisionError: b is 0" in (errors[2][1] or "")
    one = step(ratio, one_record=True)
    source = [5, None, 9]
    _values, _statuses, events, _errors = compute(one, [source, list(source), [None] * 3])
    assert events == [5, None, 9]
    assert events is not source  # a copy: the outputs' list is theirs


def test_each_row_gets_a_fresh_dict() -> None:
    s = step(grabby, one_record=True)
    result = run_step(s, {"a": [1.0, 2.0], "b": [1.0, 1.0], "amount": [0.0, 0.0]}, 2)
    assert result.values == [[0.0, 0.0]]
    assert result.errors is None
