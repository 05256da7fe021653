"""``featurestore offline gc``: the offline store's garbage collection, with lineage.

Each table's own gc (after every commit, ``table.py``) keeps whatever a pin holds. This
one also decides which pins still hold: a pin whose training set is no longer recorded,
or older than ``offline_store.keep_training_inputs``, is released (logged with why),
then every table is collected. A dry run releases and removes nothing and reports the
same: what would go and why each file outside the current manifests stays.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.offline import pins as pin_files
from featurestore.offline.table import DEFAULT_RETENTION_SECONDS, MANIFESTS, OfflineTable
from featurestore.offline.training_inputs import TRAINING_SETS

if TYPE_CHECKING:
    from featurestore.store import FeatureStore

BY = "featurestore offline gc"
PENDING_SECONDS = 86_400.0  # a build's pins before its record: longer than any join


@dataclass
class TableReport:
    table: str  # view@vN
    current_files: int
    # {training_set (None: a build that stopped before its record), reason}
    released: list[dict[str, Any]] = field(default_factory=list)
    pinned: list[dict[str, Any]] = field(default_factory=list)  # {training_set, reason}
    remove: list[dict[str, str]] = field(default_factory=list)  # {path, reason}
    keep: list[dict[str, str]] = field(default_factory=list)  # {path, reason}


@dataclass
class GcReport:
    dry_run: bool
    tables: list[TableReport] = field(default_factory=list)
    # Entity-row folders of training sets no longer recorded (or of builds that crashed).
    training_sets: list[dict[str, str]] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return sum(len(t.remove) for t in self.tables) + len(self.training_sets)


def format_duration(seconds: float) -> str:
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def collect(
    store: FeatureStore,
    *,
    dry_run: bool = False,
    retention_seconds: float = DEFAULT_RETENTION_SECONDS,
) -> GcReport:
    project_root = Path(store.config.offline_store_path) / store.project
    keep_for = store.config.keep_training_inputs_seconds
    records = {r.id: r for r in store.registry.training_sets(store.project)}
    now = time.time()
    report = GcReport(dry_run)
    for root in sorted(project_root.glob(f"*/v*/{MANIFESTS}")):
        table = OfflineTable(root.parent, retention_seconds=retention_seconds)
        current = table.manifest()
        entry = TableReport(
            f"{root.parent.parent.name}@{root.parent.name}", current_files=len(current.files)
        )
        added = _missing_pins(entry, table, records, now, keep_for, dry_run)
        released: set[str] = set()
        for pin in pin_files.pins(table.root):
            reason = _release_reason(pin, records, now, keep_for)
            if reason is None:
                continue
            released.add(pin.key)
            entry.released.append({"training_set": pin.training_set, "reason": reason})
            if not dry_run:
                pin_files.release(table.root, pin.key, reason, by=BY)
        if dry_run:
            plan = table.garbage(current, ignore_pins=frozenset(released), add_pins=added)
        else:
            plan = table.collect_garbage(by=BY, current=current, ignore_pins=frozenset(released))
        entry.remove = [{"path": p, "reason": r} for p, r in plan.remove]
        entry.keep = [{"path": p, "reason": r} for p, r in plan.keep]
        report.tables.append(entry)
    report.training_sets = _entity_folders(project_root, records, now, retention_seconds, dry_run)
    return report


def _release_reason(
    pin: pin_files.Pin, records: dict[Any, Any], now: float, keep_for: float | None
) -> str | None:
    """Why ``pin`` no longer holds, or None while it does."""
    if pin.training_set is None:
        if now - pin.pinned_at < PENDING_SECONDS:
            return None
        return (
            f"a training-set build that pinned at {datetime.fromtimestamp(pin.pinned_at, UTC)} "
            "was never recorded (it stopped)"
        )
    record = records.get(pin.training_set)
    if record is None:
        return f"training set #{pin.training_set} is no longer recorded"
    created = record.created_at
    if keep_for is not None and created is not None and now - created.timestamp() >= keep_for:
        return f"older than offline_store.keep_training_inputs ({format_duration(keep_for)})"
    return None


def _missing_pins(
    entry: TableReport,
    table: OfflineTable,
    records: dict[Any, Any],
    now: float,
    keep_for: float | None,
    dry_run: bool,
) -> tuple[pin_files.Pin, ...]:
    """Pin again what a rebuildable record read if its pin is missing (a build that
    stopped between its record and its pins) and the manifest is still there. Only records
    whose entity rows are in this offline store: those are its training sets."""
    have = {p.training_set for p in pin_files.pins(table.root) if p.training_set is not None}
    sets = table.root.parent.parent / TRAINING_SETS
    added = []
    for record in records.values():
        sequence = record.offline_manifests.get(entry.table)
        if not sequence or record.build is None or record.id in have:
            continue
        if not (sets / str(record.id)).is_dir():
            continue
        age = now - record.created_at.timestamp() if record.created_at else 0.0
        if keep_for is not None and age >= keep_for:
            continue
        if not (table.manifests_dir / f"{sequence:010d}.json").exists():
            continue
        added.append(pin_files.Pin(record.id, sequence, now, str(record.id)))
        entry.pinned.append(
            {
                "training_set": record.id,
                "reason": f"its record reads commit {sequence}, which had no pin",
            }
        )
        if not dry_run:
            pin_files.pin(table.root, str(record.id), sequence, record.id)
    return tuple(added)


def _entity_folders(
    project_root: Path, records: dict[Any, Any], now: float, retention: float, dry_run: bool
) -> list[dict[str, str]]:
    """Entity rows of deleted records, and pending folders of builds that stopped."""
    out = []
    for folder in sorted((project_root / TRAINING_SETS).glob("*")):
        name = folder.name
        if name.startswith(".pending-"):
            try:
                age = now - folder.stat().st_mtime
            except FileNotFoundError:
                continue
            if age < retention:
                continue
            why = "a training-set build that stopped before it was recorded"
        elif name.isdigit() and int(name) not in records:
            why = f"training set #{name} is no longer recorded"
        else:
            continue
        out.append({"path": f"{TRAINING_SETS}/{name}", "reason": why})
        if not dry_run:
            shutil.rmtree(folder, ignore_errors=True)
    return out
