"""Training data: resolve what is asked for, check the input, join, record lineage."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featurestore.errors import EntityInputError
from featurestore.offline.join import OfflineEngine, build_request, read_entities
from featurestore.online.on_demand import plan_on_demand
from featurestore.registry import Registry, RegistrySnapshot, TrainingSetRecord
from featurestore.registry.snapshot import ResolvedFeature
from featurestore.times import as_utc, micros

if TYPE_CHECKING:
    from featurestore.offline.spine import Spine

REBUILD = "Build the training set again (its output file was damaged after it was written)."


@dataclass(frozen=True, slots=True)
class TrainingSet:
    """A finished build: the table (unless streamed to a file) and its lineage record."""

    table: pa.Table | None
    record: TrainingSetRecord
    # On-demand values that failed (null in the set), by view version: the function
    # raised or returned no value or one of the wrong type.
    on_demand_failures: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.record.rows

    def to_pandas(self) -> Any:
        if self.table is None:
            raise EntityInputError(
                f"This training set was written to {self.record.output_path}; read it from there."
            )
        return self.table.to_pandas()


def resolve_request(
    snapshot: RegistrySnapshot,
    *,
    features: Sequence[str] | None,
    feature_service: str | None,
    model: str | None,
) -> list[ResolvedFeature]:
    """Exactly one of features / feature_service / model, resolved to pinned view versions."""
    given = [x is not None for x in (features, feature_service, model)]
    if sum(given) != 1:
        raise EntityInputError(
            "Ask for training data with exactly one of features=[...], feature_service=... or "
            "model=... (a model reads the view versions it is pinned to)."
        )
    if model is not None:
        return snapshot.resolve_model(model)
    if feature_service is not None:
        snapshot.feature_service(feature_service)  # raises with did-you-mean
        return snapshot.resolve_all([feature_service])
    return snapshot.resolve_all(list(features or []))


def parse_as_of(value: datetime | str | None) -> datetime | None:
    """``as_of`` as an aware UTC datetime (naive and zone-less ISO strings are UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise EntityInputError(
                f"as_of={value!r} is not an ISO 8601 time; give e.g. 2026-01-07T22:00:00+00:00."
            ) from exc
    if not isinstance(value, datetime):
        raise EntityInputError(
            f"as_of must be a datetime or an ISO 8601 string (got {type(value).__name__})."
        )
    return as_utc(value)


def _entity_rows(
    snapshot: RegistrySnapshot,
    offline_root: Path,
    entities: Any,
    timestamp_column: str,
    known_at: datetime | None,
) -> tuple[pa.Table, Spine | None, int | None]:
    """The entity rows (the given ones, or a spine's: ``offline/spine.py``), the spine, and
    ``as_of`` in microseconds."""
    from featurestore.offline.spine import SpineRequest, spine_rows

    as_of_us = None if known_at is None else micros(known_at)
    if entities is None:
        raise EntityInputError(
            "No entity rows: pass entities (a table, DataFrame or Parquet path) or "
            "spine='view' with start= and end= to take them from a view's rows."
        )
    if isinstance(entities, SpineRequest):
        spined = spine_rows(snapshot, offline_root, entities, as_of_us)
        return spined.rows, spined, as_of_us
    return read_entities(entities, timestamp_column), None, as_of_us


def fingerprint_table(table: pa.Table) -> str:
    """A content hash of the entity rows, so lineage can tell two inputs apart."""
    digest = hashlib.sha256()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    digest.update(sink.getvalue())
    return digest.hexdigest()


def build_training_set(
    *,
    registry: Registry,
    snapshot: RegistrySnapshot,
    offline_root: Path,
    engine: OfflineEngine,
    entities: Any,
    features: Sequence[str] | None = None,
    feature_service: str | None = None,
    model: str | None = None,
    timestamp_column: str = "event_timestamp",
    full_feature_names: bool = False,
    output_path: str | os.PathLike[str] | None = None,
    policy_default: str = "allow",
    mask_key: bytes = b"",
    as_of: datetime | str | None = None,
) -> TrainingSet:
    resolved = resolve_request(
        snapshot, features=features, feature_service=feature_service, model=model
    )
    masks, rules = _policy_masks(
        registry, snapshot, model, resolved, policy_default, full_feature_names
    )
    known_at = parse_as_of(as_of)
    table, spined, as_of_us = _entity_rows(
        snapshot, offline_root, entities, timestamp_column, known_at
    )
    on_demand = plan_on_demand(snapshot, resolved)
    request = build_request(
        table,
        resolved,
        snapshot,
        offline_root,
        timestamp_column=timestamp_column,
        full_feature_names=full_feature_names,
        on_demand=on_demand,
        as_of_us=as_of_us,
    )
    from featurestore.offline.training_inputs import hold_inputs, record_with_inputs

    read = {f"{v.view}@v{v.version}": v.manifest_sequence for v in request.views}
    held = hold_inputs(offline_root, snapshot.project, read)  # kept however long the join
    result, rows, failures = join_set(
        engine, request, on_demand, resolved, full_feature_names, masks, mask_key, output_path
    )
    record = TrainingSetRecord(
        project=snapshot.project,
        model=model,
        features=tuple(str(f) for f in resolved),
        entity_fingerprint=fingerprint_table(table),
        entity_rows=table.num_rows,
        rows=rows,
        engine=engine.name,
        output_path=str(Path(output_path).resolve()) if output_path is not None else None,
        offline_manifests=read,
        fingerprint=content_fingerprint(result, output_path),
        build=build_settings(timestamp_column, full_feature_names, masks, rules, table),
        as_of=known_at,
        spine=spined.describe() if spined is not None else None,
    )
    columns = {
        f"{f.view}__{f.feature}" if full_feature_names else f.feature: str(f) for f in resolved
    }
    profiles = _profiles(result, Path(output_path) if output_path is not None else None, columns)
    record_id = record_with_inputs(registry, record, profiles, offline_root, table, held)
    _audit_build(registry, replace(record, id=record_id), masks, rules, failures)
    return TrainingSet(result, replace(record, id=record_id), failures)


def _audit_build(
    registry: Registry,
    record: TrainingSetRecord,
    masks: dict[str, str],
    rules: list[str],
    failures: dict[str, int],
) -> None:
    from featurestore.registry.audit import AuditRecord
    from featurestore.registry.database import whoami

    registry.audit.append(
        AuditRecord(
            project=record.project,
            action="training_set",
            actor=whoami(),
            subject=record.model or "",
            decision="mask" if masks else ("allow" if record.model else ""),
            rule=",".join(rules),
            detail={
                "training_set": record.id,
                "features": list(record.features),
                "masked": sorted(masks),
                "rows": record.rows,
                **({"on_demand_failures": failures} if failures else {}),
            },
        )
    )


def build_settings(
    timestamp_column: str,
    full_feature_names: bool,
    masks: dict[str, str],
    rules: list[str],
    entities: pa.Table,
) -> dict[str, Any]:
    """What a rebuild needs besides the entity rows and the features (``rebuild.py``)."""
    return {
        "timestamp_column": timestamp_column,
        "full_feature_names": full_feature_names,
        "masks": masks,
        "rules": rules,
        # entity_fingerprint hashes IPC bytes, which a Parquet round trip may change.
        "entities": content_fingerprint(entities, None),
    }


def content_fingerprint(table: pa.Table | None, output_path: str | os.PathLike[str] | None) -> str:
    """The set's content fingerprint: of the table, or of the file it was written to."""
    from featurestore.offline.fingerprint import fingerprint_of_file, fingerprint_of_table

    if table is not None:
        return fingerprint_of_table(table)
    assert output_path is not None
    return fingerprint_of_file(Path(output_path), "the training set just written", REBUILD)


def join_set(
    engine: OfflineEngine,
    request: Any,
    on_demand: Any,
    resolved: Sequence[ResolvedFeature],
    full_feature_names: bool,
    masks: dict[str, str],
    mask_key: bytes,
    output_path: str | os.PathLike[str] | None,
) -> tuple[pa.Table | None, int, dict[str, int]]:
    """The joined (and on-demand computed, and masked) set, or its row count once written
    to ``output_path``; and the failed on-demand values per view version."""
    path = Path(output_path) if output_path is not None else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if on_demand.steps:
        from featurestore.offline.on_demand import add_on_demand

        # Computed in memory from the whole join (a written set is written after).
        names = [f"{f.view}__{f.feature}" if full_feature_names else f.feature for f in resolved]
        result, failures = add_on_demand(
            engine.join(request), on_demand, names, request.input_columns
        )
        if masks:
            result = _mask_table(result, masks, mask_key)
        if path is None:
            return result, result.num_rows, failures
        from featurestore.offline import parquet_io

        parquet_io.write_table(result, path)
        return None, result.num_rows, failures
    if path is not None:
        rows = engine.join_to_parquet(request, path)
        if masks:
            _mask_file(path, masks, mask_key)
        return None, rows, {}
    result = engine.join(request)
    if masks:
        result = _mask_table(result, masks, mask_key)
    return result, result.num_rows, {}


def _profiles(
    table: pa.Table | None, path: Path | None, columns: dict[str, str]
) -> list[dict[str, Any]]:
    """Reference profiles of the features (as the model got them: masked ones masked); a
    written set is read back one column at a time."""
    from featurestore.drift.profile import profile_column

    if table is not None:
        return [profile_column(ref, table.column(name)).to_dict() for name, ref in columns.items()]
    from featurestore.offline.parquet_io import parquet_file

    assert path is not None
    source = parquet_file(path, "the training set just written", REBUILD)
    return [
        profile_column(ref, source.read(columns=[name]).column(0)).to_dict()
        for name, ref in columns.items()
    ]


def _policy_masks(
    registry: Registry,
    snapshot: RegistrySnapshot,
    model: str | None,
    resolved: Sequence[Any],
    default: str,
    full_feature_names: bool,
) -> tuple[dict[str, str], list[str]]:
    """For a model's build: refuse denied features (PolicyDeniedError, before any work);
    return the output columns to mask and how, and the masking rules."""
    if model is None:
        return {}, []
    from featurestore.policy.engine import masks_of, policy_decisions
    from featurestore.registry.audit import AuditRecord
    from featurestore.registry.database import whoami

    def audit_denial(feature: Any, decision: Any, exc: Exception) -> None:
        registry.audit.append(
            AuditRecord(
                project=snapshot.project,
                action="deny",
                actor=whoami(),
                subject=f"{model} {feature}",
                decision="deny",
                rule=decision.rule or "default",
                detail={"at": "training_set", "message": str(exc)},
            )
        )

    decisions = policy_decisions(snapshot, model, resolved, default, on_deny=audit_denial)
    masks = masks_of(decisions)
    columns = {
        f"{resolved[i].view}__{resolved[i].feature}"
        if full_feature_names
        else resolved[i].feature: how
        for i, how in masks
    }
    return columns, sorted({decisions[i].rule or "default" for i, _ in masks})


def _mask_table(table: pa.Table, masks: dict[str, str], key: bytes) -> pa.Table:
    from featurestore.policy.engine import masker

    for name, how in masks.items():
        i = table.schema.get_field_index(name)
        mask = masker(how, key)
        values = [mask(v) for v in table.column(i).to_pylist()]
        kind = pa.string() if how == "hash" else table.schema.field(i).type
        table = table.set_column(i, name, pa.array(values, kind))
    return table


def _mask_file(path: Path, masks: dict[str, str], key: bytes) -> None:
    """Rewrite a written training set with its masked columns, batch by batch."""
    from featurestore.offline import parquet_io

    source = parquet_io.parquet_file(path, "the training set just written", REBUILD)
    tmp = path.with_name(f".{path.name}.masking")
    writer = None
    try:
        for batch in source.iter_batches(batch_size=256_000):
            table = _mask_table(pa.Table.from_batches([batch]), masks, key)
            if writer is None:
                writer = parquet_io.writer(tmp, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:
        os.replace(tmp, path)
