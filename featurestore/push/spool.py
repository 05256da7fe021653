"""The offline buffer's spool: buffered push rows also go to a local file, so a crashed
process's rows are landed by the next one instead of being lost.

Each process writes, per view version, one spool file at a time under
``<state_dir>/push-spool/<project>/<view>@<version>/``, and holds an exclusive ``flock``
on it for as long as the file is its own: it is written before the push answers, and
removed once its rows have landed offline. A file whose lock can be taken belongs to
no live process: ``orphans()`` yields its rows so that they can be landed (and then the
file removed). A process killed mid-write leaves a cut-short last record: it was never
answered, and is skipped.

What this covers: a process crash (SIGKILL, OOM, a bug). The file is written with
``os.write`` and not fsynced, so a machine crash (power, kernel) can still lose the
last seconds of pushes; and a crash between a landing's commit and the removal of its
file lands those rows again on recovery (the same rows, keys, event and created times:
a point-in-time read returns the same values).

Records are pickled: the files are this process's own, in the repo's state folder, and
rows hold bytes and tuples that JSON would need a schema to rebuild.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pickle
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from featurestore.push.rows import Row

log = logging.getLogger("featurestore.push")

LENGTH = struct.Struct(">I")
SUFFIX = ".spool"


@dataclass(slots=True)
class SpoolFile:
    """One spool file, locked by this process while it is open."""

    path: Path
    fd: int

    def remove(self) -> None:
        """Its rows have landed: remove it (unlinked while still locked, so no other
        process can take it in between)."""
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._current: dict[tuple[str, int], SpoolFile] = {}

    def append(self, view: str, version: int, rows: list[Row]) -> None:
        """Write ``rows`` to the view version's current file (made on first use)."""
        current = self._current.get((view, version))
        if current is None:
            current = self._current[(view, version)] = self._new_file(view, version)
        data = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
        os.write(current.fd, LENGTH.pack(len(data)) + data)

    def rotate(self, view: str, version: int) -> SpoolFile | None:
        """The view version's current file, no longer written (the next append starts a
        new one); ``remove()`` it once its rows have landed."""
        return self._current.pop((view, version), None)

    def close(self) -> None:
        """Release the files still open (their rows not landed: the next process lands
        them)."""
        for spool_file in self._current.values():
            os.close(spool_file.fd)
        self._current.clear()

    def _new_file(self, view: str, version: int) -> SpoolFile:
        folder = self.root / f"{view}@{version}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(6)}"
        tmp = folder / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        final = folder / f"{name}{SUFFIX}"
        os.replace(tmp, final)  # visible to orphans() only once locked
        return SpoolFile(final, fd)

    def orphans(self) -> Iterator[tuple[str, int, list[Row], SpoolFile]]:
        """(view, version, rows, file) of every spool file no live process holds; the
        caller lands the rows, then ``file.remove()`` (or closes ``file.fd`` to leave it)."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            view, _, version = folder.name.rpartition("@")
            if not folder.is_dir() or not version.isdigit():
                continue
            for path in sorted(folder.glob(f"*{SUFFIX}")):
                taken = _take(path)
                if taken is None:
                    continue
                try:
                    rows = read_rows(taken)
                except Exception as exc:
                    log.warning("push spool %s is unreadable, left in place: %s", path, exc)
                    os.close(taken)
                    continue
                yield view, int(version), rows, SpoolFile(path, taken)


def _take(path: Path) -> int | None:
    """A locked fd of ``path`` if no process holds it and it is still linked."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if os.fstat(fd).st_nlink == 0:  # removed by its owner between open and lock
        os.close(fd)
        return None
    return fd


def read_rows(fd: int) -> list[Row]:
    """Every whole record of a spool file (a cut-short last one is skipped)."""
    rows: list[Row] = []
    with os.fdopen(os.dup(fd), "rb") as f:
        while True:
            head = f.read(LENGTH.size)
            if len(head) < LENGTH.size:
                break
            (size,) = LENGTH.unpack(head)
            data = f.read(size)
            if len(data) < size:
                break
            rows += pickle.loads(data)  # our own file (see the docstring)
    return rows
