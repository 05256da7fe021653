"""What a recorded training set keeps so it can be rebuilt: its entity rows and its pins.

Under the offline store, ``<project>/_training_sets/<id>/entities.parquet`` holds the
entity rows exactly as the join got them; each view version's table it read holds a pin
on the manifest it read (``pins.py``), from before the join (``hold_inputs``) until the
record is deleted. The entity file is written before the registry record (in a pending
folder, renamed to the id after), so a failed record leaves nothing and a record never
lacks its entities.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featurestore.offline import parquet_io
from featurestore.offline import pins as pin_files

if TYPE_CHECKING:
    from featurestore.registry import Registry, TrainingSetRecord

TRAINING_SETS = "_training_sets"
ENTITIES = "entities.parquet"


def inputs_dir(offline_root: Path, project: str, training_set: int) -> Path:
    return Path(offline_root) / project / TRAINING_SETS / str(training_set)


def table_root(offline_root: Path, project: str, label: str) -> Path:
    """The table folder of ``view@vN``."""
    view, _, version = label.partition("@v")
    return Path(offline_root) / project / view / f"v{int(version)}"


def stage_entities(offline_root: Path, project: str, entities: pa.Table) -> Path:
    """Write the entity rows into a pending folder; ``keep_inputs`` or ``discard`` it."""
    folder = Path(offline_root) / project / TRAINING_SETS / f".pending-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    parquet_io.write_table(entities, folder / ENTITIES)
    return folder


def hold_inputs(offline_root: Path, project: str, manifests: dict[str, int]) -> str:
    """Pin what a build is about to read, before it joins; the pending pins' key (a build
    that stops leaves them to ``featurestore offline gc``, which releases them after a day)."""
    key = f"{pin_files.PENDING}{uuid.uuid4().hex}"
    for label, sequence in manifests.items():
        if sequence:
            pin_files.pin(table_root(offline_root, project, label), key, sequence, None)
    return key


def record_with_inputs(
    registry: Registry,
    record: TrainingSetRecord,
    profiles: list[dict[str, Any]],
    offline_root: Path,
    entities: pa.Table,
    held: str,
) -> int:
    """Record the training set, keeping its entity rows and pinning what it read (its
    ``held`` pending pins become the id's); the id."""
    staged = stage_entities(offline_root, record.project, entities)
    try:
        training_set = registry.record_training_set(record, profiles)
    except BaseException:
        discard(staged)
        release_pending(offline_root, record.project, record.offline_manifests, held)
        raise
    keep_inputs(offline_root, record.project, training_set, staged, record.offline_manifests)
    release_pending(offline_root, record.project, record.offline_manifests, held)
    return training_set


def release_pending(offline_root: Path, project: str, manifests: dict[str, int], key: str) -> None:
    for label in manifests:
        pin_files.unpin(table_root(offline_root, project, label), key)


def discard(staged: Path) -> None:
    shutil.rmtree(staged, ignore_errors=True)


def keep_inputs(
    offline_root: Path, project: str, training_set: int, staged: Path, manifests: dict[str, int]
) -> Path:
    """Move the staged entities to the training set's folder and pin what it read."""
    final = inputs_dir(offline_root, project, training_set)
    # The id is ours now; a folder under it is a deleted record's (SQLite reuses the
    # largest id once its row is gone).
    shutil.rmtree(final, ignore_errors=True)
    staged.rename(final)
    for label, sequence in manifests.items():
        if sequence:  # commit 0: an empty table, nothing to keep
            root = table_root(offline_root, project, label)
            pin_files.pin(root, str(training_set), sequence, training_set)
    return final


def release_inputs(
    offline_root: Path, project: str, training_set: int, manifests: dict[str, int], by: str
) -> list[str]:
    """After its record was deleted: release a training set's pins (what only it read goes
    at the next gc past the retention) and remove its entity rows; the tables (``view@vN``)
    it had pinned."""
    released = []
    reason = f"training set #{training_set} was deleted"
    for label in manifests:
        root = table_root(offline_root, project, label)
        if pin_files.release(root, str(training_set), reason, by=by):
            released.append(label)
    shutil.rmtree(inputs_dir(offline_root, project, training_set), ignore_errors=True)
    return released
