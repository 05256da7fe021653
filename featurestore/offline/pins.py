"""What a table's garbage collection must keep, and what it removed: pins and the gc log.

A recorded training set pins, in each view version's table it read, the manifest
(commit) it read: ``_pins/<training set id>.json``. A build pins before it joins
(``_pins/pending-<token>.json``, replaced by the id's pin once recorded), so a join that
outlasts the retention still finds what it read kept. The table's gc keeps a pinned
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


PENDING = "pending-"


@dataclass(frozen=True, slots=True)
class Pin:
    training_set: int | None  # None: a build in progress, not recorded yet
    sequence: int  # the manifest the training set read
    pinned_at: float  # unix time
    key: str  # the pin file's stem: the training set's id, or pending-<token>


def pin(table_root: Path, key: str, sequence: int, training_set: int | None) -> None:
    """Keep manifest ``sequence`` of the table at ``table_root`` under pin ``key``."""
    folder = Path(table_root) / PINS
    folder.mkdir(parents=True, exist_ok=True)
    body = {"training_set": training_set, "sequence": sequence, "pinned_at": time.time()}
    tmp = folder / f".{key}.{uuid.uuid4().hex}.tmp"
    tmp.write_bytes(orjson.dumps(body))
    os.replace(tmp, folder / f"{key}.json")


def pins(table_root: Path) -> list[Pin]:
    """The table's pins, recorded ones by training set, then builds in progress; an
    unreadable pin file is skipped (a pin being written is never half there: os.replace)."""
    folder = Path(table_root) / PINS
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        try:
            raw = orjson.loads((folder / name).read_bytes())
            ident = raw["training_set"]
            out.append(
                Pin(
                    None if ident is None else int(ident),
                    int(raw["sequence"]),
                    float(raw["pinned_at"]),
                    name.removesuffix(".json"),
                )
            )
        except (FileNotFoundError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return sorted(out, key=lambda p: (p.training_set is None, p.training_set or 0, p.key))


def unpin(table_root: Path, key: str) -> None:
    """Drop a pin without logging (a build's pending pin, replaced by its recorded one)."""
    (Path(table_root) / PINS / f"{key}.json").unlink(missing_ok=True)


def release(table_root: Path, key: str | int, reason: str, by: str) -> bool:
    """Drop pin ``key`` (a training set's id, or a pending build's key), logged with
    ``reason``; False if there was none."""
    path = Path(table_root) / PINS / f"{key}.json"
    if not path.exists():
        return False
    path.unlink(missing_ok=True)
    logged = int(key) if str(key).isdigit() else str(key)
    log(table_root, [{"pin": logged, "reason": reason}], by)
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
