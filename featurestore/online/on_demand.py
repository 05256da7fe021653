"""Running on-demand views: one code path for lookups and training sets.

A lookup and a training-set build hand the same function the same inputs (Python values
per input column, request fields included) and convert its outputs with the same rules,
so a feature computed online equals the one trained on, value for value (the
training/serving skew an on-demand view must not bring back).

Failures stay with the row and feature they concern: a function that raises, returns
no value for an output or one of the wrong type fails that output of that row with a
message, never the request. Output rules, by the schema's dtype: ints for int32/int64
(bools refused); ints or floats for float32/float64 (as float); str for string; bytes;
bool; datetimes for timestamps (as UTC); lists of numbers for array<float32>; None is
null. In pandas mode NaN, NaT and None are all null (pandas has no other missing value),
and a float that is a whole number is accepted for ints (pandas turns an int column with
a null into floats).

This module is on the online read path: pandas is imported only for a pandas-mode view.
"""

from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from featurestore.definitions.function_code import FunctionCode, rebuild
from featurestore.dtypes import DType
from featurestore.errors import EntityInputError

ERROR = "error"  # the status of an on-demand output whose computation failed


@dataclass(frozen=True, slots=True)
class OnDemandStep:
    """One on-demand view version inside a lookup or a training set."""

    label: str  # 'view@vN'
    mode: str
    singleton: bool
    code: FunctionCode
    inputs: tuple[tuple[str, int], ...]  # (input name, working column), stored features
    requests: tuple[tuple[str, DType, str], ...]  # (field, dtype, request source)
    outputs: tuple[tuple[str, int, DType], ...]  # (feature, working column, dtype)
    input_dtypes: tuple[tuple[str, str], ...] = ()  # every input's dtype, requests included
    # All stored inputs come from one view version, read from one record per row: their
    # event times are equal, so the outputs' event time is that column's (no max per row).
    one_record: bool = False
    # Feast hands pandas and column functions each stored input twice, as ``feature`` and
    # ``view__feature``: (alias, input name) for those modes, so Feast code runs unchanged.
    aliases: tuple[tuple[str, str], ...] = ()
    # Per output and per request field, its dtype's converter and check (a dict lookup
    # per call saved).
    converters: tuple[Callable[[Any, bool], Any], ...] = field(init=False, repr=False)
    checks: tuple[Callable[[Any], Any], ...] = field(init=False, repr=False)
    named_converters: tuple[tuple[str, Callable[[Any, bool], Any]], ...] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        converters = tuple(CONVERTERS[dtype.name] for _, _, dtype in self.outputs)
        object.__setattr__(self, "converters", converters)
        named = tuple(zip((name for name, _, _ in self.outputs), converters, strict=True))
        object.__setattr__(self, "named_converters", named)
        object.__setattr__(
            self, "checks", tuple(REQUEST_CHECKS[dtype.name] for _, dtype, _ in self.requests)
        )


@dataclass(slots=True)
class StepResult:
    values: list[list[Any]]  # per output, per row
    errors: list[list[str | None]] | None  # per output, per row; None: no failure


def request_values(
    step: OnDemandStep, rows: Sequence[dict[str, Any]], what: str = "Entity row"
) -> dict[str, list[Any]]:
    """The request fields of every row, checked against their dtypes; EntityInputError
    names the row and the field."""
    out: dict[str, list[Any]] = {}
    for item, check in zip(step.requests, step.checks, strict=True):
        name = item[0]
        try:  # the common case in two comprehensions; a failure is explained row by row
            column = [row[name] for row in rows]
            out[name] = [value if value is None else check(value) for value in column]
        except (KeyError, TypeError, ValueError):
            out[name] = _request_column(step, item, check, rows, what)
    return out


def _request_column(
    step: OnDemandStep,
    item: tuple[str, DType, str],
    check: Callable[[Any], Any],
    rows: Sequence[dict[str, Any]],
    what: str,
) -> list[Any]:
    """A request field of ``rows`` checked one row at a time, to name the row that fails."""
    name, dtype, source = item
    for i, row in enumerate(rows):
        if name not in row:
            raise EntityInputError(
                f"{what} {i} has no request field '{name}', which on-demand view "
                f"{step.label} needs (RequestSource '{source}', {dtype}). Send it beside "
                "the entity keys."
            )
    return _checked([row[name] for row in rows], check, item, what)


def _checked(
    values: Sequence[Any], check: Callable[[Any], Any], item: tuple[str, DType, str], what: str
) -> list[Any]:
    name, dtype, source = item
    out = []
    for i, value in enumerate(values):
        if value is not None:
            try:
                value = check(value)
            except (TypeError, ValueError) as exc:
                raise EntityInputError(
                    f"{what} {i}: request field '{name}' of RequestSource '{source}' "
                    f"must be {dtype}: {exc}."
                ) from None
        out.append(value)
    return out


def run_step(step: OnDemandStep, inputs: dict[str, list[Any]], n: int) -> StepResult:
    """The step's outputs for ``n`` rows of ``inputs`` (input name -> values)."""
    fn = rebuild(step.code)
    if step.aliases:
        inputs = {**inputs, **{alias: inputs[name] for alias, name in step.aliases}}
    if step.mode == "pandas":
        return _run_pandas(step, fn, inputs, n)
    if not step.singleton:
        return _run_columns(step, fn, inputs, n)
    return _run_rows(step, fn, inputs, n)


def _empty(step: OnDemandStep, n: int) -> StepResult:
    return StepResult([[None] * n for _ in step.outputs], None)


def _fail(result: StepResult, step: OnDemandStep, o: int, r: int, message: str) -> None:
    if result.errors is None:
        result.errors = [[None] * len(result.values[0]) for _ in step.outputs]
    result.values[o][r] = None
    result.errors[o][r] = message


def _raised(step: OnDemandStep, exc: BaseException) -> str:
    return f"{step.label}: the function raised {type(exc).__name__}: {exc}"


def _run_rows(
    step: OnDemandStep, fn: Callable[..., Any], inputs: dict[str, list[Any]], n: int
) -> StepResult:
    outputs = step.outputs
    columns = [[None] * n for _ in outputs]
    result = StepResult(columns, None)
    names = tuple(inputs)
    converted = step.named_converters
    # every input holds n values (columns of one lookup or training set): zip needs no check
    for r, values in enumerate(zip(*inputs.values())):  # noqa: B905
        row = dict(zip(names, values))  # noqa: B905
        try:
            out = fn(row)
        except Exception as exc:  # a user function's failure stays with its row
            for o in range(len(outputs)):
                _fail(result, step, o, r, _raised(step, exc))
            continue
        if not isinstance(out, dict):
            for o in range(len(outputs)):
                _fail(
                    result,
                    step,
                    o,
                    r,
                    f"{step.label}: returned a {type(out).__name__}, not "
                    "a dict of outputs (python mode: one row's dict in, a dict out)",
                )
            continue
        for o, (name, convert) in enumerate(converted):
            if name not in out:
                _fail(result, step, o, r, f"{step.label}: returned no '{name}'")
                continue
            value = out[name]
            if value is not None:
                try:
                    value = convert(value, False)
                except (TypeError, ValueError) as exc:
                    dtype = outputs[o][2]
                    _fail(result, step, o, r, f"{step.label}: '{name}' must be {dtype}: {exc}")
                    continue
            columns[o][r] = value
    return result


def _run_columns(
    step: OnDemandStep, fn: Callable[..., Any], inputs: dict[str, list[Any]], n: int
) -> StepResult:
    """Feast's python mode: columns in, columns out."""
    try:
        out = fn({k: list(v) for k, v in inputs.items()})
    except Exception as exc:
        return _all_failed(step, n, _raised(step, exc))
    if not isinstance(out, dict):
        return _all_failed(
            step, n, f"{step.label}: returned a {type(out).__name__}, not a dict of output columns"
        )
    return _collect(step, n, lambda name: out.get(name), pandas=False)


def _run_pandas(
    step: OnDemandStep, fn: Callable[..., Any], inputs: dict[str, list[Any]], n: int
) -> StepResult:
    import pandas as pd  # type: ignore[import-untyped]
    import pyarrow as pa

    from featurestore.dtypes import parse_dtype

    types = dict(step.input_dtypes)
    arrays = {}
    for name, values in inputs.items():
        dtype = types.get(name)
        arrays[name] = pa.array(values, type=parse_dtype(dtype).arrow_type() if dtype else None)
    frame = pa.table(arrays).to_pandas() if arrays else pd.DataFrame(index=range(n))
    try:
        out = fn(frame)
    except Exception as exc:
        return _all_failed(step, n, _raised(step, exc))
    if not isinstance(out, pd.DataFrame):
        return _all_failed(
            step, n, f"{step.label}: returned a {type(out).__name__}, not a DataFrame (pandas mode)"
        )

    def column(name: str) -> Any:
        return out[name].tolist() if name in out.columns else None

    return _collect(step, n, column, pandas=True)


def _collect(
    step: OnDemandStep, n: int, column_of: Callable[[str], Any], *, pandas: bool
) -> StepResult:
    result = _empty(step, n)
    for o, (name, _, dtype) in enumerate(step.outputs):
        column = column_of(name)
        if column is None:
            for r in range(n):
                _fail(result, step, o, r, f"{step.label}: returned no '{name}'")
            continue
        if not isinstance(column, list | tuple) or len(column) != n:
            size = len(column) if isinstance(column, list | tuple) else type(column).__name__
            for r in range(n):
                _fail(result, step, o, r, f"{step.label}: '{name}' has {size} values for {n} rows")
            continue
        convert = CONVERTERS[dtype.name]
        target = result.values[o]
        for r, value in enumerate(column):
            if pandas and _missing(value):
                continue
            if value is None:
                continue
            try:
                target[r] = convert(value, pandas)
            except (TypeError, ValueError) as exc:
                _fail(result, step, o, r, f"{step.label}: '{name}' must be {dtype}: {exc}")
    return result


def _all_failed(step: OnDemandStep, n: int, message: str) -> StepResult:
    result = _empty(step, n)
    for o in range(len(step.outputs)):
        for r in range(n):
            _fail(result, step, o, r, message)
    return result


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NaTType", "NAType")


# -- conversions -------------------------------------------------------------------


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = 4
_REPR.maxlevel = 2


def _shown(value: Any) -> str:
    """A bounded repr: a hostile value (a huge or deeply nested list) costs nothing to name."""
    return _REPR.repr(value)


def _to_int(bits: int) -> Callable[[Any, bool], int]:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def convert(value: Any, pandas: bool) -> int:
        if type(value) is int and low <= value <= high:
            return value
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            raise TypeError(f"got the bool {value!r}")
        whole = pandas and isinstance(value, float) and value.is_integer()
        if isinstance(value, numbers.Integral) or whole:
            number = int(value)
        else:
            raise TypeError(f"got {_shown(value)} ({type(value).__name__})")
        if not low <= number <= high:
            raise ValueError(f"{number} is out of range for int{bits}")
        return number

    return convert


def _to_float(value: Any, pandas: bool) -> float:
    if type(value) is float:  # the common case first: an ABC isinstance costs about 1 us
        return value
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise TypeError(f"got the bool {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"got {_shown(value)} ({type(value).__name__})")


def _to_str(value: Any, pandas: bool) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"got {_shown(value)} ({type(value).__name__})")


def _to_bytes(value: Any, pandas: bool) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise TypeError(f"got {_shown(value)} ({type(value).__name__})")


def _to_bool(value: Any, pandas: bool) -> bool:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"got {_shown(value)} ({type(value).__name__})")


def _to_time(value: Any, pandas: bool) -> datetime:
    if isinstance(value, datetime):
        to_py = getattr(value, "to_pydatetime", None)
        moment: datetime = to_py() if to_py is not None else value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    raise TypeError(f"got {_shown(value)} ({type(value).__name__}), not a datetime")


def _to_floats(value: Any, pandas: bool) -> list[float]:
    items = value.tolist() if hasattr(value, "tolist") else value
    if not isinstance(items, list | tuple):
        raise TypeError(f"got {_shown(value)} ({type(value).__name__}), not a list of numbers")
    return [_to_float(v, pandas) for v in items]


CONVERTERS: dict[str, Callable[[Any, bool], Any]] = {
    "int32": _to_int(32),
    "int64": _to_int(64),
    "float32": _to_float,
    "float64": _to_float,
    "string": _to_str,
    "bytes": _to_bytes,
    "bool": _to_bool,
    "timestamp": _to_time,
    "array<float32>": _to_floats,
}


def _request(dtype: str) -> Callable[[Any], Any]:
    """The check of a request field of ``dtype``, specialised once per dtype (it runs for
    every row of every lookup)."""
    convert = CONVERTERS[dtype]

    def check_int(value: Any) -> Any:
        if isinstance(value, float):
            raise TypeError(f"got the float {value!r}")
        return convert(value, False)

    def check_float(value: Any) -> Any:
        if type(value) is float:  # what convert returns for it, NaN and infinities included
            return value
        if isinstance(value, float) and not math.isfinite(value):
            return value  # NaN and infinities are floats; the function decides
        return convert(value, False)

    def check(value: Any) -> Any:
        return convert(value, False)

    if dtype in ("int32", "int64"):
        return check_int
    if dtype in ("float32", "float64"):
        return check_float
    return check


REQUEST_CHECKS = {name: _request(name) for name in CONVERTERS}


@dataclass(frozen=True, slots=True)
class OnDemandPlan:
    """How a request's on-demand features are computed.

    Working columns are the requested features (0..n-1) followed by ``hidden``: stored
    inputs the request did not ask for, read only to feed a function.
    """

    steps: tuple[OnDemandStep, ...]
    hidden: tuple[Any, ...]  # ResolvedFeature of each hidden column
    computed: frozenset[int]  # the requested columns that steps fill

    @property
    def request_fields(self) -> list[tuple[str, DType, str]]:
        seen: dict[str, tuple[str, DType, str]] = {}
        for step in self.steps:
            for item in step.requests:
                seen.setdefault(item[0], item)
        return list(seen.values())


NO_ON_DEMAND = OnDemandPlan((), (), frozenset())


def plan_on_demand(snapshot: Any, features: Sequence[Any]) -> OnDemandPlan:
    """The steps of the on-demand views among ``features`` (ResolvedFeatures of one
    snapshot), each bound to the input versions its view version was applied with."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, f in enumerate(features):
        if snapshot.view_version(f.view, f.version).on_demand:
            groups.setdefault((f.view, f.version), []).append(i)
    if not groups:
        return NO_ON_DEMAND
    computed = _flat(groups)
    column_of = {f.ref: i for i, f in enumerate(features) if i not in computed}
    hidden: list[Any] = []
    steps = []
    for (view, version), outputs in groups.items():
        definition = snapshot.on_demand_view(view, version)
        inputs = []
        dtypes: list[tuple[str, str]] = []
        records = set()
        for resolved in snapshot.on_demand_inputs(view, version):
            records.add((resolved.view, resolved.version))
            column = column_of.get(resolved.ref)
            if column is None:
                column = column_of[resolved.ref] = len(features) + len(hidden)
                hidden.append(resolved)
            inputs.append((resolved.feature, column))
            dtypes.append((resolved.feature, str(resolved.dtype)))
        requests = tuple((f.name, f.dtype, r.name) for r in definition.requests for f in r.schema)
        aliases: tuple[tuple[str, str], ...] = ()
        if definition.mode == "pandas" or not definition.singleton:
            stored = snapshot.on_demand_inputs(view, version)
            aliases = tuple((f"{r.view}__{r.feature}", r.feature) for r in stored)
            dtypes += [(f"{r.view}__{r.feature}", str(r.dtype)) for r in stored]
        dtypes += [(name, str(dtype)) for name, dtype, _ in requests]
        assert definition.code is not None
        steps.append(
            OnDemandStep(
                label=f"{view}@v{version}",
                mode=definition.mode,
                singleton=definition.singleton,
                code=definition.code,
                inputs=tuple(inputs),
                requests=requests,
                outputs=tuple((features[i].feature, i, features[i].dtype) for i in outputs),
                input_dtypes=tuple(dtypes),
                one_record=len(records) == 1,
                aliases=aliases,
            )
        )
    return OnDemandPlan(tuple(steps), tuple(hidden), frozenset(computed))


def _flat(groups: dict[tuple[str, int], list[int]]) -> set[int]:
    return {i for outputs in groups.values() for i in outputs}


def request_columns(
    step: OnDemandStep, column_of: Callable[[str], list[Any] | None], what: str
) -> dict[str, list[Any]]:
    """Request fields from columns (a training set's entity table): each must be there;
    values are checked as a lookup checks them."""
    out: dict[str, list[Any]] = {}
    for item, check in zip(step.requests, step.checks, strict=True):
        name, dtype, source = item
        column = column_of(name)
        if column is None:
            raise EntityInputError(
                f"{what} has no column '{name}', the request field (RequestSource '{source}', "
                f"{dtype}) that on-demand view {step.label} needs: add it to the entity rows."
            )
        out[name] = _checked(column, check, item, f"{what}, row")
    return out
