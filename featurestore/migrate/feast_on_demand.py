"""Feast's request-time objects, converted: on-demand feature views and request sources.

An ``OnDemandFeatureView`` becomes ours with the same function: its definition is copied
(without Feast's decorator, annotations or docstring) under ``@on_demand_feature_view``,
with the imports and constants of its module that it uses. Modes map one to one: Feast's
``pandas`` is ``pandas``; its ``python`` is ``python`` with ``singleton`` as Feast had it
(Feast's default, ``singleton=False``, hands the function columns; ``True``, one row).
Inputs are named by feature as in Feast's functions (``inputs["conv_rate"]``), and in
pandas and column functions also ``view__feature``, as Feast names them too.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from featurestore.definitions.function_code import carried_parts
from featurestore.errors import DefinitionError

# Feast's primitive types, by their str(), to featurestore's dtype names.
TYPES = {
    "Int32": "Int32",
    "Int64": "Int64",
    "Float32": "Float32",
    "Float64": "Float64",
    "String": "String",
    "Bool": "Bool",
    "Bytes": "Bytes",
    "UnixTimestamp": "UnixTimestamp",
    "Array(Float32)": "Array(Float32)",
    "Array(Float64)": "Array(Float64)",
    "Array(Int64)": "Array(Int64)",
    "Array(Int32)": "Array(Int32)",
    "Array(String)": "Array(String)",
}
_INPUT_SCHEMA_PREFIX = "__input_schema__"  # Feast's RequestSource made from input_schema=


@dataclass
class Converted:
    """Python source of one converted object, and what the file needs for it."""

    block: str = ""
    preamble: list[str] = field(default_factory=list)  # imports and constants, one per line
    dtypes: set[str] = field(default_factory=set)
    problem: str = ""  # why it was not converted
    notes: list[str] = field(default_factory=list)


def fields_source(fields: Any, owner: str) -> tuple[list[str], set[str], str]:
    """``Field(...)`` lines for Feast fields, their dtypes, and a problem ("" if none)."""
    lines, dtypes = [], set()
    for f in fields:
        dtype = TYPES.get(str(f.dtype))
        if dtype is None or ("(" in dtype and dtype != "Array(Float32)"):
            return [], set(), f"{owner}: field `{f.name}` has type {f.dtype}, not supported"
        dtypes |= {dtype.split("(")[0], *([dtype[6:-1]] if "(" in dtype else [])}
        lines.append(f"        Field(name={lit(f.name)}, dtype={dtype}),\n")
    return lines, dtypes, ""


def request_source(s: Any, ident: str, name: str) -> Converted:
    lines, dtypes, problem = fields_source(s.schema, f"RequestSource `{s.name}`")
    if problem:
        return Converted(problem=problem)
    block = (
        f"{ident} = RequestSource(\n    name={lit(name)},\n    schema=[\n{''.join(lines)}    ],\n)"
    )
    return Converted(block, dtypes=dtypes | {"RequestSource"})


def on_demand_view(
    v: Any,
    ident: str,
    name: str,
    views: dict[str, tuple[str, set[str]]],
    requests: Callable[[Any], str | None],
) -> Converted:
    """Our definition of Feast's on-demand view ``v``. ``views``: converted Feast views by
    name (identifier, features kept); ``requests``: converts a request source, giving
    its identifier (None: not converted)."""
    mode = str(v.mode).lower()
    if mode not in ("python", "pandas"):
        return Converted(problem=f"mode {mode!r}: only python and pandas functions convert")
    if getattr(v, "aggregations", None):
        return Converted(problem="aggregations in an on-demand view are not converted")
    udf = v.feature_transformation.udf if v.feature_transformation is not None else v.udf
    text = getattr(v, "udf_string", "") or ""
    sources, notes = [], []
    for view_name, projection in v.source_feature_view_projections.items():
        found = views.get(view_name)
        if found is None:
            return Converted(problem=f"its input view `{view_name}` was not converted")
        view_ident, kept = found
        wanted = [f.name for f in projection.features]
        lost = [f for f in wanted if f not in kept]
        used = [f for f in lost if f'"{f}"' in text or f"'{f}'" in text]
        if used:
            return Converted(problem=f"it reads {used} of `{view_name}`, which were not converted")
        if lost:  # inputs the function never names: left out of its inputs
            notes.append(
                f"On-demand view `{v.name}` reads `{view_name}` without {lost} (not converted, "
                "and its function does not use them)."
            )
        sources.append(f"{view_ident}[{lit([f for f in wanted if f in kept])}]")
    for request in v.source_request_sources.values():
        request_ident = requests(request)
        if request_ident is None:
            return Converted(problem=f"its request source `{request.name}` was not converted")
        sources.append(request_ident)
    lines, dtypes, problem = fields_source(v.features, f"OnDemandFeatureView `{v.name}`")
    if problem:
        return Converted(problem=problem)
    try:
        preamble, definition = carried_parts(udf, f"OnDemandFeatureView '{v.name}'")
    except DefinitionError as exc:
        return Converted(problem=str(exc))
    definition = re.sub(r"^def \w+\(", f"def {ident}(", definition, count=1)
    singleton = "" if mode == "pandas" else f"    singleton={bool(v.singleton)},\n"
    block = (
        "@on_demand_feature_view(\n"
        f"    name={lit(name)},\n"
        f"    sources=[{', '.join(sources)}],\n"
        f"    schema=[\n{''.join(lines)}    ],\n"
        f"    mode={lit(mode)},\n{singleton}" + meta(v) + _docstring(v, udf) + f")\n{definition}"
    )
    preamble = [line for line in preamble if not _imports_feast(line)]
    return Converted(block, preamble, dtypes | {"on_demand_feature_view"}, notes=notes)


def _docstring(v: Any, udf: Any) -> str:
    """The function's docstring as the view's description, when Feast's has none (the
    carried code drops docstrings: they do not change values)."""
    doc = inspect.getdoc(udf) or ""
    if getattr(v, "description", "") or not doc:
        return ""
    return f"    description={lit(doc)},\n"


def _imports_feast(line: str) -> bool:
    return bool(re.match(r"(from|import) feast(\.|\s|$)", line))


def meta(obj: Any, extra_tags: dict[str, str] | None = None) -> str:
    """The description, owner and tags arguments of a converted definition."""
    out = ""
    for attr in ("description", "owner"):
        value = getattr(obj, attr, "") or ""
        if value:
            out += f"    {attr}={lit(value)},\n"
    tags = {**dict(getattr(obj, "tags", {}) or {}), **(extra_tags or {})}
    if tags:
        out += f"    tags={lit(tags)},\n"
    return out


def lit(value: Any) -> str:
    """A Python literal in the style of the definitions we write (double quotes)."""
    import json

    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(lit(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{lit(k)}: {lit(v)}" for k, v in value.items()) + "}"
    return repr(value)


def is_input_schema_source(name: str) -> bool:
    return name.startswith(_INPUT_SCHEMA_PREFIX)
