"""What a table's garbage collection must keep, and what it removed: pins and the gc log.

A recorded training set pins, in each view version's table it read, the manifest
(commit) it read: ``_pins/<training set id>.json``. The table's gc keeps a pinned
manifest and every file it lists, however old, until the pin is released (the training
set is deleted, or ``featurestore offline gc`` finds it older than
``offline_store.keep_training_inputs``). Pins live beside the data, not only in the
registry, so every writer's gc (batch, Spark, stream) honours them without a registry
connection.

Every removal is appended to ``_gc.log`` (JSON lines: when, what, why, by which gc), so
a rebuild that finds an input gone can say which gc removed it and why.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

PINS = "_pins"
GC_LOG = "_gc.log"


@dataclass(frozen=True, slots=True)
class Pin:
    training_set: int
    sequence: int  # the manifest the training set read
    pinned_at: float  # unix time


def pin(table_root: Path, training_set: int, sequence: int) -> None:
    """Keep manifest ``sequence`` of the table at ``table_root`` for ``training_set``."""
    folder = Path(table_root) / PINS
    folder.mkdir(parents=True, exist_ok=True)
    body = {"training_set": training_set, "sequence": sequence, "pinned_at": time.time()}
    tmp = folder / f".{training_set}.{uuid.uuid4().hex}.tmp"
    tmp.write_bytes(orjson.dumps(body))
    os.replace(tmp, folder / f"{training_set}.json")


def pins(table_root: Path) -> list[Pin]:
    """The table's pins, by training set; unreadable pin files count as pins of nothing
    (never as permission to delete: their training set's files stay listed elsewhere)."""
    folder = Path(table_root) / PINS
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        try:
            raw = orjson.loads((folder / name).read_bytes())
            out.append(Pin(int(raw["training_set"]), int(raw["sequence"]), raw["pinned_at"]))
        except (FileNotFoundError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return sorted(out, key=lambda p: p.training_set)


def release(table_root: Path, training_set: int, reason: str, by: str) -> bool:
    """Drop a training set's pin (logged with ``reason``); False if it had none."""
    path = Path(table_root) / PINS / f"{training_set}.json"
    if not path.exists():
        return False
    path.unlink(missing_ok=True)
    log(table_root, [{"pin": training_set, "reason": reason}], by)
    return True


def log(table_root: Path, entries: list[dict[str, Any]], by: str) -> None:
    if not entries:
        return
    at = datetime.now(UTC).isoformat(timespec="seconds")
    lines = b"".join(orjson.dumps({"at": at, "by": by, **e}) + b"\n" for e in entries)
    with open(Path(table_root) / GC_LOG, "ab") as handle:
        handle.write(lines)


def removals(table_root: Path) -> list[dict[str, Any]]:
    """Everything the table's gc removed or released, oldest first."""
    try:
        data = (Path(table_root) / GC_LOG).read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in data.splitlines():
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # a line cut by a crash mid-append
    return out
