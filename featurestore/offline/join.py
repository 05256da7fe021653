"""What a point-in-time join needs, checked and normalized before any engine runs.

Semantics (DESIGN.md, "Offline store"): for each entity row with keys k and
time t, and each requested view version, the feature row with the same keys
and the latest ``event_timestamp <= t`` that is also ``>= t - ttl`` (both
bounds inclusive; no TTL, no lower bound). Ties on event time go to the
larger ``created_timestamp``, then to the later write. No such row gives
nulls; the entity row is always kept, in its original position, with every
input column passed through unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.errors import EntityInputError, SchemaMismatchError
from featurestore.offline.table import DataFile, OfflineTable
from featurestore.offline.timestamps import to_utc_us
from featurestore.offline.writer import offline_schema, row_numbers
from featurestore.online.on_demand import NO_ON_DEMAND, OnDemandPlan
from featurestore.registry.snapshot import RegistrySnapshot, ResolvedFeature

ROW = "__fs_row"
TS = "__fs_ts"


@dataclass(frozen=True)
class ViewJoin:
    """One view version's part of a join."""

    view: str
    version: int
    join_keys: tuple[str, ...]
    features: tuple[str, ...]
    output_names: tuple[str, ...]
    ttl_us: int | None
    files: tuple[tuple[str, int], ...]  # (absolute path, write sequence), pruned by time
    schema: pa.Schema  # the offline table's schema
    manifest_sequence: int = 0  # the offline commit read: lineage of the training set
    # Files whose rows may tie on (keys, event time) with another row; the others can
    # skip the dedupe step (an engine may still dedupe everything).
    dedupe_files: frozenset[str] = frozenset()

    @property
    def output_types(self) -> list[pa.DataType]:
        return [self.schema.field(f).type for f in self.features]


@dataclass(frozen=True)
class JoinRequest:
    entities: pa.Table  # the input columns, plus ROW (0..n-1) and TS (UTC)
    timestamp_column: str
    views: tuple[ViewJoin, ...]
    output_order: tuple[str, ...] = ()  # feature columns in the order they were asked for

    @property
    def input_columns(self) -> list[str]:
        return [c for c in self.entities.column_names if c not in (ROW, TS)]

    @property
    def join_keys(self) -> list[str]:
        return list(dict.fromkeys(k for view in self.views for k in view.join_keys))

    @property
    def output_types(self) -> dict[str, pa.DataType]:
        return {
            name: dtype
            for view in self.views
            for name, dtype in zip(view.output_names, view.output_types, strict=True)
        }

    def assemble(self, features: pa.Table, offset: int = 0) -> pa.Table:
        """Input rows [offset, offset + len(features)) with the feature columns appended.

        Engines compute only the row number and the features; the input columns
        are taken from the input itself, so they pass through exactly as given
        (names, case and types included).
        """
        rows = features.column(ROW)
        expected = row_numbers(features.num_rows, offset)
        if not rows.equals(pa.chunked_array([expected])):  # pragma: no cover - a bug guard
            raise AssertionError("an engine lost, duplicated or reordered entity rows")
        out = self.entities.slice(offset, features.num_rows).select(self.input_columns)
        types = self.output_types
        for name in self.output_order:
            out = out.append_column(name, features.column(name).cast(types[name]))
        return out


class OfflineEngine(Protocol):
    """Runs a JoinRequest: returns the input rows in order with feature columns appended."""

    name: str

    def join(self, request: JoinRequest) -> pa.Table: ...

    def join_to_parquet(self, request: JoinRequest, path: Path) -> int: ...


def read_entities(entities: Any, timestamp_column: str) -> pa.Table:
    """A pyarrow Table, a pandas DataFrame or a Parquet path, as a pyarrow Table."""
    if isinstance(entities, pa.Table):
        table = entities
    elif isinstance(entities, str | os.PathLike):
        path = Path(entities)
        if not path.exists():
            raise EntityInputError(f"Entity input {path} does not exist.")
        from featurestore.offline.parquet_io import read_table

        table = read_table(path, "entity rows", "Write the entity file again.")
    elif type(entities).__module__.startswith("pandas"):
        try:
            table = pa.Table.from_pandas(entities, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise EntityInputError(
                f"Entity DataFrame cannot be converted ({exc}). Mixed time zones or mixed types "
                f"in a column (often '{timestamp_column}') are the usual cause."
            ) from exc
    else:
        raise EntityInputError(
            "Entity input must be a pyarrow Table, a pandas DataFrame or a Parquet path "
            f"(got {type(entities).__name__})."
        )
    return table.combine_chunks()


def build_request(
    entities: pa.Table,
    features: Sequence[ResolvedFeature],
    snapshot: RegistrySnapshot,
    offline_root: Path,
    *,
    timestamp_column: str = "event_timestamp",
    full_feature_names: bool = False,
    on_demand: OnDemandPlan = NO_ON_DEMAND,
    as_of_us: int | None = None,
) -> JoinRequest:
    """Check the entity rows against the requested features and plan the join.

    Every problem with the input is raised here, naming the column, before
    any data is read. With ``on_demand``, its computed features are not joined (they
    are computed from the result: ``offline/on_demand.py``) and its hidden inputs are,
    as columns named ``hidden_column(j)`` after the requested ones. With ``as_of_us``,
    only files that landed at or before it are read (what the store knew then).
    """
    if entities.num_rows == 0:
        raise EntityInputError("The entity input has no rows; give at least one entity row.")
    if timestamp_column not in entities.column_names:
        raise EntityInputError(
            f"The entity input has no timestamp column '{timestamp_column}' (columns: "
            f"{', '.join(entities.column_names)}). Pass timestamp_column=... to name it."
        )
    for reserved in (ROW, TS):
        if reserved in entities.column_names:
            raise EntityInputError(f"The entity input uses the reserved column name '{reserved}'.")
    try:
        ts = to_utc_us(entities.column(timestamp_column), f"Entity column '{timestamp_column}'")
    except SchemaMismatchError as exc:
        raise EntityInputError(str(exc)) from exc
    if ts.null_count:
        raise EntityInputError(
            f"Entity column '{timestamp_column}' has {ts.null_count} null timestamp(s); every "
            "entity row needs the time at which its features are wanted."
        )
    if not features:
        raise EntityInputError("No features requested; pass features=[...], a service or a model.")

    by_view: dict[tuple[str, int], list[ResolvedFeature]] = {}
    joined = [f for i, f in enumerate(features) if i not in on_demand.computed]
    for feature in [*joined, *on_demand.hidden]:
        by_view.setdefault((feature.view, feature.version), []).append(feature)
    names = _output_names(features, full_feature_names)
    for j, hidden in enumerate(on_demand.hidden):
        names[hidden.ref] = hidden_column(j)
    clash = sorted(set(names.values()) & set(entities.column_names))
    if clash:
        raise EntityInputError(
            f"The entity input already has column(s) {clash}, which the output would use for "
            "features. Rename them, or pass full_feature_names=True (view__feature)."
        )

    min_ts, max_ts = pc.min(ts).value, pc.max(ts).value
    keyed = entities
    views = []
    for (view_name, version), requested in by_view.items():
        keyed, view_join = _view_join(
            keyed,
            snapshot,
            offline_root,
            view_name,
            version,
            requested,
            names,
            (min_ts, max_ts),
            as_of_us,
        )
        views.append(view_join)
    keyed = keyed.append_column(ROW, row_numbers(entities.num_rows))
    keyed = keyed.append_column(TS, ts)
    order = tuple(names[f.ref] for f in [*joined, *on_demand.hidden])
    return JoinRequest(keyed, timestamp_column, tuple(views), order)


def hidden_column(j: int) -> str:
    """The join's column of an on-demand view's j-th input that was not asked for."""
    return f"__fs_input_{j}"


def _view_join(
    keyed: pa.Table,
    snapshot: RegistrySnapshot,
    offline_root: Path,
    view_name: str,
    version: int,
    requested: list[ResolvedFeature],
    names: dict[Any, str],
    span: tuple[int, int],
    as_of_us: int | None,
) -> tuple[pa.Table, ViewJoin]:
    """One view version's part of a join (the entity table with its keys checked)."""
    view = snapshot.feature_view(view_name, version)
    entity_defs = view.resolved_entities()
    for entity in entity_defs:
        keyed = _check_key(keyed, entity.join_key, entity.dtype.arrow_type(), view_name)
    ttl_us = int(view.ttl.total_seconds() * 1_000_000) if view.ttl else None
    table = OfflineTable(offline_root / snapshot.project / view_name / f"v{version}")
    start = None if ttl_us is None else span[0] - ttl_us
    manifest = table.manifest()
    read = [f for f in manifest.files if f.overlaps(start, span[1])]
    if as_of_us is not None:
        # Every row of a file landed with the commit that published it, so the file's
        # landing time decides for all its rows; the engines never see the later ones.
        read = [f for f in read if table.landed_us(f) <= as_of_us]
    files = tuple((str(table.root / f.path), f.seq) for f in read)
    return keyed, ViewJoin(
        view=view_name,
        version=version,
        join_keys=tuple(e.join_key for e in entity_defs),
        features=tuple(f.feature for f in requested),
        output_names=tuple(names[f.ref] for f in requested),
        ttl_us=ttl_us,
        files=files,
        schema=offline_schema(view),
        manifest_sequence=manifest.sequence,
        dedupe_files=frozenset(str(table.root / f.path) for f in needs_dedupe(read)),
    )


def needs_dedupe(files: Sequence[DataFile]) -> list[DataFile]:
    """The files whose rows may tie with another row on (keys, event time).

    A tie needs two rows at the same event time. A tie-free file (its write reduced
    its ties) can only tie with a file of another write whose time range overlaps
    its own; batch windows and in-order streams rarely overlap, so most reads skip
    the dedupe entirely.
    """
    ordered = sorted(files, key=lambda f: f.min_ts)
    marked = [not f.tie_free for f in ordered]
    for i, f in enumerate(ordered):
        for j in range(i + 1, len(ordered)):
            g = ordered[j]
            if g.min_ts > f.max_ts:
                break  # sorted by start: no later file overlaps f either
            if g.seq != f.seq:
                marked[i] = marked[j] = True
    return [f for f, m in zip(ordered, marked, strict=True) if m]


def _output_names(features: Sequence[ResolvedFeature], full: bool) -> dict[Any, str]:
    names: dict[Any, str] = {}
    taken: dict[str, ResolvedFeature] = {}
    for feature in features:
        name = f"{feature.view}__{feature.feature}" if full else feature.feature
        if name in taken:
            other = taken[name]
            hint = (
                "Request one version of it."
                if other.view == feature.view
                else "Pass full_feature_names=True to name columns view__feature."
            )
            raise EntityInputError(
                f"Features {other} and {feature} would both be named '{name}' in the output. "
                + hint
            )
        taken[name] = feature
        names[feature.ref] = name
    return names


def _check_key(table: pa.Table, key: str, dtype: pa.DataType, view: str) -> pa.Table:
    """The key column must exist and have the entity's type (integers may widen)."""
    if key not in table.column_names:
        raise EntityInputError(
            f"The entity input has no column '{key}', the join key that view '{view}' needs "
            f"(columns: {', '.join(table.column_names)})."
        )
    column = table.column(key)
    if column.type == dtype:
        return table
    widening = pa.types.is_integer(column.type) and pa.types.is_integer(dtype)
    strings = pa.types.is_large_string(column.type) and pa.types.is_string(dtype)
    if pa.types.is_null(column.type) or widening or strings:
        try:
            converted = column.cast(dtype)
        except pa.ArrowInvalid as exc:
            raise EntityInputError(
                f"Entity column '{key}' has values that do not fit {dtype}, the type view "
                f"'{view}' keys it as ({exc})."
            ) from exc
        return table.set_column(table.column_names.index(key), key, converted)
    raise EntityInputError(
        f"Entity column '{key}' is {column.type}, but view '{view}' keys it as {dtype}. "
        f"Convert the column to {dtype}."
    )
