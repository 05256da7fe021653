"""Rebuild a recorded training set exactly, or say precisely why it cannot be.

A record keeps what the join needs (``training_inputs.py``): the entity rows, the pinned
feature references, how it was joined (timestamp column, names, masks) and, per view
version, the offline commit it read. A rebuild joins the same entity rows against those
commits' manifests (not the tables' newest), so later appends, window replaces and gcs
change nothing, and checks the content fingerprint against the record. An input that is
gone raises TrainingInputGone naming it and the gc that removed it; a different result
raises FingerprintMismatch: never a silently different set.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.errors import FingerprintMismatch, TrainingInputGone
from featurestore.offline import pins as pin_files
from featurestore.offline.join import (
    TS,
    JoinRequest,
    OfflineEngine,
    ViewJoin,
    build_request,
    needs_dedupe,
)
from featurestore.offline.parquet_io import read_table
from featurestore.offline.table import MANIFESTS, OfflineTable
from featurestore.offline.training import content_fingerprint, join_set
from featurestore.offline.training_inputs import ENTITIES, inputs_dir, table_root
from featurestore.online.on_demand import plan_on_demand
from featurestore.registry import TrainingSetRecord
from featurestore.times import micros

if TYPE_CHECKING:
    from featurestore.store import FeatureStore

RESTORE = "Restore it from a backup of the offline store to rebuild this set; nothing was rebuilt."


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """A rebuild that matched its record: the table (in memory) or the file written."""

    record: TrainingSetRecord
    fingerprint: str
    rows: int
    table: pa.Table | None
    output_path: Path | None


def rebuild_training_set(
    store: FeatureStore,
    training_set: int,
    out: str | os.PathLike[str] | None = None,
    *,
    engine: str | OfflineEngine | None = None,
) -> Rebuilt:
    """Join recorded training set ``training_set`` again, as of the commits it read.

    With ``out`` the set is written there (removed again if it does not match); a set
    first written to a file is otherwise rebuilt into a temporary file, one built in
    memory into memory. ``engine`` (a name or an engine) defaults to the one that built it.
    """
    record = store.registry.training_set(store.project, training_set)
    build = _build_settings(record)
    offline_root = store.config.offline_store_path
    entities = _entities(offline_root, record)
    snapshot = store.snapshot()
    resolved = [snapshot.resolve(ref) for ref in record.features]
    on_demand = plan_on_demand(snapshot, resolved)
    request = build_request(
        entities,
        resolved,
        snapshot,
        offline_root,
        timestamp_column=build["timestamp_column"],
        full_feature_names=build["full_feature_names"],
        on_demand=on_demand,
    )
    request = as_of_commits(request, offline_root, record)
    if engine is None or isinstance(engine, str):
        runner = store.offline_engine(engine or record.engine)
    else:
        runner = engine
    with tempfile.TemporaryDirectory(prefix="fs-rebuild-") as scratch:
        path: Path | None = None
        if out is not None:
            path = Path(out)
        elif record.output_path is not None:
            path = Path(scratch) / "rebuilt.parquet"
        table, rows, _ = join_set(
            runner,
            request,
            on_demand,
            resolved,
            build["full_feature_names"],
            build["masks"],
            store.mask_key(),
            path,
        )
        fingerprint = content_fingerprint(table, path)
        if fingerprint != record.fingerprint:
            if out is not None:
                Path(out).unlink(missing_ok=True)
            raise FingerprintMismatch(
                f"Rebuilt training set #{record.id} differs from the recorded one: fingerprint "
                f"{fingerprint[:16]}... with {rows:,} rows, recorded {str(record.fingerprint)[:16]}"
                f"... with {record.rows:,} rows, though every input it read is still there. "
                "A changed mask key (FEATURESTORE_MASK_KEY, for hashed features) or an engine "
                "other than the recorded one are the usual causes; nothing was kept"
                + (f" at {out}." if out is not None else ".")
            )
    return Rebuilt(record, fingerprint, rows, table, Path(out) if out is not None else None)


def _build_settings(record: TrainingSetRecord) -> dict[str, Any]:
    if record.build is None or record.fingerprint is None:
        raise TrainingInputGone(
            f"Training set #{record.id} was recorded before featurestore kept what a rebuild "
            "needs (its entity rows, build settings and content fingerprint: registry schema "
            "8), so it cannot be rebuilt. Build it again for a record that can be."
        )
    return record.build


def _entities(offline_root: Path, record: TrainingSetRecord) -> pa.Table:
    assert record.id is not None
    path = inputs_dir(offline_root, record.project, record.id) / ENTITIES
    if not path.exists():
        raise TrainingInputGone(
            f"Cannot rebuild training set #{record.id}: its entity rows ({path}) are gone. "
            "featurestore removes them only with the training set's record, so something "
            f"else deleted them. {RESTORE}",
            path=str(path),
        )
    table = read_table(path, f"the entity rows of training set #{record.id}", RESTORE)
    recorded = (record.build or {}).get("entities")
    if content_fingerprint(table, None) != recorded:
        raise FingerprintMismatch(
            f"Cannot rebuild training set #{record.id}: its entity rows ({path}) are not the "
            f"ones it was built from (fingerprint differs from the recorded "
            f"{str(recorded)[:16]}...). {RESTORE}"
        )
    return table.combine_chunks()


def as_of_commits(
    request: JoinRequest, offline_root: Path, record: TrainingSetRecord
) -> JoinRequest:
    """``request`` reading, for each view version, the manifest the record read (pruned by
    time as the first build was); TrainingInputGone if that manifest or a file it lists
    is gone."""
    ts = request.entities.column(TS)
    min_ts, max_ts = pc.min(ts).value, pc.max(ts).value
    views = [_view_at_commit(v, offline_root, record, min_ts, max_ts) for v in request.views]
    return replace(request, views=tuple(views))


def _view_at_commit(
    view: ViewJoin, offline_root: Path, record: TrainingSetRecord, min_ts: int, max_ts: int
) -> ViewJoin:
    label = f"{view.view}@v{view.version}"
    sequence = record.offline_manifests.get(label)
    if sequence is None:
        raise TrainingInputGone(
            f"Cannot rebuild training set #{record.id}: its record names no offline commit "
            f"of {label} (it reads {', '.join(record.offline_manifests) or 'none'})."
        )
    root = table_root(offline_root, record.project, label)
    table = OfflineTable(root)
    manifest_rel = f"{MANIFESTS}/{sequence:010d}.json"
    try:
        manifest = table.manifest_at(sequence)
    except FileNotFoundError:
        raise _gone(record, label, sequence, root, manifest_rel, "its manifest") from None
    start = None if view.ttl_us is None else min_ts - view.ttl_us
    read = [f for f in manifest.files if f.overlaps(start, max_ts)]
    if record.as_of is not None:  # what the store knew then, as the first build read it
        as_of_us = micros(record.as_of)
        read = [f for f in read if table.landed_us(f) <= as_of_us]
    for f in read:
        if not (root / f.path).exists():
            raise _gone(record, label, sequence, root, f.path, "a file it lists")
    return replace(
        view,
        files=tuple((str(root / f.path), f.seq) for f in read),
        manifest_sequence=sequence,
        dedupe_files=frozenset(str(root / f.path) for f in needs_dedupe(read)),
    )


def _gone(
    record: TrainingSetRecord, label: str, sequence: int, root: Path, rel: str, what: str
) -> TrainingInputGone:
    """Which input is gone, and what the table's gc log says about it."""
    log = pin_files.removals(root)
    removed = [e for e in log if e.get("path") == rel]
    released = [e for e in log if e.get("pin") == record.id]
    if removed:
        last = removed[-1]
        why = f"removed by {last['by']} at {last['at']}: {last['reason']}"
    else:
        why = (
            f"no featurestore gc removed it (see {root / pin_files.GC_LOG}), so something "
            "outside featurestore deleted it"
        )
    if released:
        last = released[-1]
        why += (
            f"; training set #{record.id}'s hold on {label} was released by {last['by']} at "
            f"{last['at']}: {last['reason']}"
        )
    return TrainingInputGone(
        f"Cannot rebuild training set #{record.id}: {label} at offline commit {sequence} "
        f"reads {rel} ({what}), which is gone: {why}. {RESTORE}",
        path=str(root / rel),
    )
