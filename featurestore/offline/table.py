"""One view version's offline table: immutable Parquet files plus a manifest log.

Layout, under ``<offline root>/<project>/<view>/v<version>/``::

    date=2026-01-07/part-<uuid>.parquet   Hive-partitioned by event date, never modified
    _manifests/0000000042.json            the complete file list of commit 42
    _lock                                 serializes writers (fcntl)

A commit writes its files first and then publishes a new manifest with one
atomic ``link``: readers take the newest manifest and see either all of a
write or none of it. Each manifest entry carries the file's event-time range
and a sequence number, so reads prune files outside the time range and break
exact ties (same keys, event and created time) in favour of the later write.
A file a commit stops referencing is deleted only once the retention has
passed since that commit (the manifest remembers when), so a reader holding an
older manifest can finish its read. A manifest a recorded training set read is
pinned (``pins.py``): it and every file it lists stay, so the set can be rebuilt.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from featurestore.offline import pins as pin_files

MANIFESTS = "_manifests"
STREAM = "stream"  # manifest detail: a stream consumer's committed position
DEFAULT_RETENTION_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class DataFile:
    path: str  # relative to the table folder
    date: str
    rows: int
    min_ts: int  # event time range, microseconds since the epoch (UTC)
    max_ts: int
    seq: int  # commit that wrote it: later commits win exact ties
    # No two rows share keys and event time within this file's write (the writer
    # reduced them): a file that overlaps no other write's time range needs no dedupe.
    tie_free: bool = False
    # When the commit that first published these rows landed (us since the epoch, UTC): what
    # ``as_of`` reads filter on. 0 = written before landing times were recorded.
    landed_us: int = 0

    def overlaps(self, start_us: int | None, end_us: int | None) -> bool:
        """Whether any row may fall in [start_us, end_us] (both inclusive, None = open)."""
        return (start_us is None or self.max_ts >= start_us) and (
            end_us is None or self.min_ts <= end_us
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    sequence: int
    files: tuple[DataFile, ...] = ()
    operation: str = "create"
    committed_at: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    orphans: dict[str, float] = field(default_factory=dict)  # path -> unix time unreferenced

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "sequence": self.sequence,
                "operation": self.operation,
                "committed_at": self.committed_at,
                "detail": self.detail,
                "orphans": self.orphans,
                "files": [
                    {
                        "path": f.path,
                        "date": f.date,
                        "rows": f.rows,
                        "min_ts": f.min_ts,
                        "max_ts": f.max_ts,
                        "seq": f.seq,
                        "tie_free": f.tie_free,
                        "landed_us": f.landed_us,
                    }
                    for f in self.files
                ],
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw = orjson.loads(data)
        return cls(
            sequence=raw["sequence"],
            files=tuple(DataFile(**f) for f in raw["files"]),
            operation=raw.get("operation", ""),
            committed_at=raw.get("committed_at", ""),
            detail=raw.get("detail", {}),
            orphans=raw.get("orphans", {}),
        )


class OfflineTable:
    """The files of one view version, read and committed through manifests."""

    def __init__(self, root: Path, *, retention_seconds: float = DEFAULT_RETENTION_SECONDS):
        self.root = Path(root)
        self.retention_seconds = retention_seconds

    @property
    def manifests_dir(self) -> Path:
        return self.root / MANIFESTS

    def manifest(self) -> Manifest:
        """The newest committed manifest; an empty one (sequence 0) for a table never written."""
        for _ in range(10):
            try:
                names = sorted(n for n in os.listdir(self.manifests_dir) if n.endswith(".json"))
            except FileNotFoundError:
                return Manifest(0)
            if not names:
                return Manifest(0)
            try:
                return Manifest.from_json((self.manifests_dir / names[-1]).read_bytes())
            except FileNotFoundError:
                continue  # cleaned up between listing and reading: list again
        raise RuntimeError(f"Cannot read a stable manifest of {self.root}")  # pragma: no cover

    def files(self, start_us: int | None = None, end_us: int | None = None) -> list[DataFile]:
        """Committed files that may hold rows with event time in [start_us, end_us]."""
        return [f for f in self.manifest().files if f.overlaps(start_us, end_us)]

    def landed_us(self, f: DataFile) -> int:
        """When ``f``'s rows landed; for a file from before landing times were recorded, its
        modification time (files are never modified, so it is when it was written)."""
        if f.landed_us:
            return f.landed_us
        try:
            return (self.root / f.path).stat().st_mtime_ns // 1000
        except FileNotFoundError:
            return 0  # gone: the read reports it

    def new_file_path(self, date: str) -> tuple[str, Path]:
        rel = f"date={date}/part-{uuid.uuid4().hex}.parquet"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return rel, path

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """One writer at a time per table; readers never wait."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "_lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def commit(
        self,
        base: Manifest,
        keep: list[DataFile],
        add: list[DataFile],
        *,
        operation: str,
        detail: dict[str, Any] | None = None,
    ) -> Manifest:
        """Publish ``keep + add`` as the next manifest. Call under ``writer_lock``."""
        sequence = base.sequence + 1
        now = time.time()
        # New files land now; a rewritten remainder keeps its original landing time.
        landed = int(now * 1_000_000)
        add = [f if f.landed_us else replace(f, landed_us=landed) for f in add]
        current = {f.path for f in keep} | {f.path for f in add}
        orphans = {p: t for p, t in base.orphans.items() if p not in current}
        orphans.update({f.path: now for f in base.files if f.path not in current})
        detail = dict(detail or {})
        if STREAM in base.detail and STREAM not in detail:
            detail[STREAM] = base.detail[STREAM]  # a stream's position outlives other commits
        manifest = Manifest(
            sequence=sequence,
            files=tuple(keep) + tuple(add),
            operation=operation,
            committed_at=datetime.now().astimezone().isoformat(timespec="seconds"),
            detail=detail,
            orphans=orphans,
        )
        self.manifests_dir.mkdir(parents=True, exist_ok=True)
        final = self.manifests_dir / f"{sequence:010d}.json"
        tmp = self.manifests_dir / f".{sequence:010d}.{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(manifest.to_json())
        try:
            os.link(tmp, final)  # atomic, and fails if another writer got there first
        finally:
            tmp.unlink()
        self._collect_garbage(manifest)
        return manifest

    def manifest_at(self, sequence: int) -> Manifest:
        """The manifest of commit ``sequence`` (FileNotFoundError once collected)."""
        if sequence == 0:
            return Manifest(0)
        return Manifest.from_json((self.manifests_dir / f"{sequence:010d}.json").read_bytes())

    def _collect_garbage(self, current: Manifest) -> None:
        self.collect_garbage(by=f"the gc after commit {current.sequence}", current=current)

    def garbage(
        self,
        current: Manifest | None = None,
        *,
        ignore_pins: frozenset[str] = frozenset(),
        add_pins: tuple[pin_files.Pin, ...] = (),
    ) -> GcPlan:
        """What a gc would remove now, and why each file not in the current manifest stays.

        A file counts from when a commit stopped referencing it; a file no manifest ever
        referenced (left by a crashed writer) from when it was written; a manifest from
        when the next one superseded it. Pinned manifests and their files stay, but for
        the pins keyed in ``ignore_pins`` (being released); ``add_pins`` count as written
        (a dry run's).
        """
        current = current if current is not None else self.manifest()
        now = time.time()
        horizon = now - self.retention_seconds
        referenced = {f.path for f in current.files}
        kept_for: dict[str, list[int | None]] = {}
        pinned: dict[int, list[int | None]] = {}
        for p in [*pin_files.pins(self.root), *add_pins]:
            if p.key in ignore_pins or p.sequence == current.sequence:
                continue
            pinned.setdefault(p.sequence, []).append(p.training_set)
        for sequence, sets in pinned.items():
            try:
                listed = self.manifest_at(sequence).files
            except (FileNotFoundError, orjson.JSONDecodeError, KeyError, TypeError):
                continue  # already gone: nothing left to keep for it
            for f in listed:
                kept_for.setdefault(f.path, []).extend(sets)
        plan = GcPlan()
        for part in sorted(self.root.glob("date=*/*.parquet")):
            rel = part.relative_to(self.root).as_posix()
            if rel in referenced:
                continue
            if rel in kept_for:
                plan.keep.append((rel, _read_by(kept_for[rel])))
                continue
            since = current.orphans.get(rel)
            why = f"unreferenced since {_when(since)} (no manifest lists it after)"
            if since is None:
                try:
                    since = part.stat().st_mtime
                except FileNotFoundError:
                    continue
                why = f"written at {_when(since)} and never committed (a writer stopped)"
            if since < horizon:
                plan.remove.append((rel, f"{why}, past the retention of {self._retention()}"))
            else:
                plan.keep.append((rel, f"within the retention of {self._retention()}"))
        try:
            names = sorted(n for n in os.listdir(self.manifests_dir) if n.endswith(".json"))
        except FileNotFoundError:
            names = []
        for older, newer in itertools.pairwise(names):
            sequence = int(older.split(".")[0])
            if sequence in pinned:
                plan.keep.append((f"{MANIFESTS}/{older}", _read_by(pinned[sequence])))
                continue
            try:
                superseded = (self.manifests_dir / newer).stat().st_mtime
            except FileNotFoundError:
                continue
            if superseded < horizon:
                plan.remove.append(
                    (
                        f"{MANIFESTS}/{older}",
                        f"superseded by commit {int(newer.split('.')[0])} at "
                        f"{_when(superseded)}, past the retention of {self._retention()}",
                    )
                )
        return plan

    def collect_garbage(
        self,
        *,
        by: str,
        current: Manifest | None = None,
        ignore_pins: frozenset[str] = frozenset(),
    ) -> GcPlan:
        """Remove what ``garbage`` lists, logging each removal (``pins.removals``)."""
        plan = self.garbage(current, ignore_pins=ignore_pins)
        removed = []
        for rel, why in plan.remove:
            (self.root / rel).unlink(missing_ok=True)
            removed.append({"path": rel, "reason": why})
        pin_files.log(self.root, removed, by)
        return plan

    def _retention(self) -> str:
        seconds = self.retention_seconds
        return f"{seconds / 3600:g}h" if seconds >= 3600 else f"{seconds:g}s"


@dataclass
class GcPlan:
    """(path relative to the table, why) of what goes and of what stays though no longer
    in the current manifest."""

    remove: list[tuple[str, str]] = field(default_factory=list)
    keep: list[tuple[str, str]] = field(default_factory=list)


def _read_by(training_sets: list[int | None]) -> str:
    """None stands for a build in progress (pinned before its record exists)."""
    sets = sorted({t for t in training_sets if t is not None})
    named = ["training set " + ", ".join(f"#{t}" for t in sets)] if sets else []
    if None in training_sets:
        named.append("a training-set build in progress")
    return "read by " + " and ".join(named)


def _when(unix: float | None) -> str:
    if unix is None:
        return "?"
    return datetime.fromtimestamp(unix).astimezone().isoformat(timespec="seconds")
