"""What the UI's pages read: one project's registry snapshot, re-read when it changes.

A page asks for ``snapshot()``; the registry's serial is checked at most once per
``refresh_seconds`` (one small query), and the snapshot and what is built from it (the
catalog's index, the key ring) are rebuilt only when the serial moved. So a page of a
10,000-view registry costs a filter over memory, not a registry read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from featurestore.policy.keys import KeyRing
    from featurestore.registry.snapshot import RegistrySnapshot
    from featurestore.store import FeatureStore

T = TypeVar("T")


class UiState:
    def __init__(self, store: FeatureStore, *, refresh_seconds: float = 1.0) -> None:
        self.store = store
        self.project = store.project
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._checked = 0.0
        self._snapshot: RegistrySnapshot | None = None
        self._derived: dict[str, Any] = {}  # built from the current snapshot
        self._recent: dict[str, tuple[float, Any, float]] = {}  # name -> (monotonic, value, time)

    def snapshot(self) -> RegistrySnapshot:
        with self._lock:
            now = time.monotonic()
            current = self._snapshot
            if current is not None and now - self._checked < self.refresh_seconds:
                return current
            self._checked = now
            serial = self.store.registry.serial(self.project)
            if current is None or serial != current.serial:
                current = self.store.registry.snapshot(self.project, previous=current)
                self._snapshot = current
                self._derived = {}
            return current

    def derived(self, name: str, build: Callable[[RegistrySnapshot], T]) -> T:
        """``build(snapshot)``, kept until the snapshot changes."""
        snapshot = self.snapshot()
        with self._lock:
            if self._snapshot is snapshot and name in self._derived:
                return cast(T, self._derived[name])
        value = build(snapshot)
        with self._lock:
            if self._snapshot is snapshot:
                self._derived[name] = value
        return value

    def recent(self, name: str, max_age: float, build: Callable[[], T]) -> tuple[T, float]:
        """``build()`` and the wall time it ran, reused for ``max_age`` seconds: for what no
        serial tracks (the audit chain's check reads the whole log)."""
        now = time.monotonic()
        with self._lock:
            kept = self._recent.get(name)
            if kept is not None and now - kept[0] < max_age:
                return cast(T, kept[1]), kept[2]
        value, at = build(), time.time()
        with self._lock:
            self._recent[name] = (now, value, at)
        return value, at

    def keys(self) -> KeyRing:
        """The project's keys as of the current snapshot (credential changes bump it)."""
        return self.derived("keys", lambda _s: self.store.key_ring())
