"""``push``: rows a service computed, written like a stream consumer writes them.

The contract: a push is all or nothing. Every row is checked first (``rows.py``); if any
is bad, PushRejected lists each bad row (index, field, reason) and nothing is written
(a service wants to know, and can fix and resend; the consumer's dead letters exist
because a topic cannot answer its producer). Good rows then go

* online: through the online store's event-time-monotonic writer (an older event
  never replaces a newer value; TTL as for any write);
* offline: into the offline buffer (``buffer.py``), spooled to a local file before
  the push answers (``spool.py``: a crashed process's rows are landed by the next),
  and landed in batches through the offline store's writer;

online first: if Redis fails, nothing is buffered offline and the push raises. Each
push is counted in its interval's lineage run (``lineage.py``) and in the audit log
(coalesced per key and view). A background thread lands due buffers and records ended
intervals; ``close`` lands and records everything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featurestore.errors import EntityInputError, did_you_mean
from featurestore.online.layout import ViewLayout
from featurestore.push.buffer import OfflineBuffer
from featurestore.push.lineage import PushLineage
from featurestore.push.rows import DEFAULT_MAX_ROWS, PushBounds, Row, RowChecker
from featurestore.push.spool import Spool

if TYPE_CHECKING:
    from featurestore.definitions import FeatureView
    from featurestore.online.store import OnlineStore
    from featurestore.online.writer import WriteStats
    from featurestore.policy.keys import Credential
    from featurestore.registry.snapshot import RegistrySnapshot

log = logging.getLogger("featurestore.push")

TARGETS = ("online", "offline", "online_and_offline")


@dataclass(frozen=True, slots=True)
class PushResult:
    view: str
    version: int
    to: str
    rows: int
    online_written: int = 0  # rows that became the online value
    online_skipped_older: int = 0  # a newer (or equal) value was there already
    online_skipped_expired: int = 0  # past the view's TTL on arrival
    offline_buffered: int = 0  # rows waiting to land offline (see buffer.py)

    def to_json(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "version": self.version,
            "to": self.to,
            "rows": self.rows,
            "online": {
                "written": self.online_written,
                "skipped_older": self.online_skipped_older,
                "skipped_expired": self.online_skipped_expired,
            },
            "offline": {"buffered": self.offline_buffered},
        }


@dataclass(frozen=True, slots=True)
class _Target:
    view: FeatureView
    layout: ViewLayout
    checker: RowChecker


@dataclass(frozen=True, slots=True)
class CheckedPush:
    """A push whose rows all passed their checks, ready to write."""

    target: _Target
    rows: list[Row]
    to: str


class Pusher:
    """Pushes for one project: ``snapshot`` gives the current registry snapshot (it is
    called per push, so it should be cheap: a catalog's), ``on_decision`` takes audit
    fields (``AuditQueue.put``)."""

    def __init__(
        self,
        snapshot: Callable[[], RegistrySnapshot],
        online: OnlineStore,
        buffer: OfflineBuffer,
        lineage: PushLineage,
        *,
        on_decision: Callable[[dict[str, Any]], None] = lambda _f: None,
        max_rows: int = DEFAULT_MAX_ROWS,
        clock: Callable[[], int] = time.time_ns,
        tick_seconds: float = 1.0,
    ) -> None:
        self.snapshot = snapshot
        self.online = online
        self.buffer = buffer
        self.lineage = lineage
        self.on_decision = on_decision
        self.max_rows = max_rows
        self.clock = clock
        self.tick_seconds = tick_seconds
        self._targets: dict[tuple[int, str, int], _Target] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        buffer.on_landed = lambda view, version, n: lineage.count(view, version, offline=n)

    def push(
        self,
        view: str,
        rows: Any,
        to: str = "online",
        *,
        version: int | None = None,
        credential: Credential | None = None,
    ) -> PushResult:
        """Check ``rows`` and write them to ``view`` (latest or given version): see the
        module docstring for the contract."""
        return self.write(self.check(view, rows, to, version=version), credential=credential)

    def check(
        self, view: str, rows: Any, to: str = "online", *, version: int | None = None
    ) -> CheckedPush:
        """Every row of a push checked, nothing written (PushRejected naming each bad row):
        a caller pushing to several views checks them all before writing any."""
        if to not in TARGETS:
            raise EntityInputError(
                f"Unknown push target {to!r}.{did_you_mean(str(to), TARGETS)} Push to "
                "'online', 'offline' or 'online_and_offline'."
            )
        target = self._target(view, version)
        if to != "offline" and not target.view.online:
            raise EntityInputError(
                f"{target.layout.label} is offline only (online=False): push it with to='offline'."
            )
        now_us = self.clock() // 1000
        checked = target.checker.check(rows, now_us)
        # A row without a created time gets the push's: a re-push of the same event time
        # then wins the tie, online and offline alike.
        checked = [r if r[2] is not None else (r[0], r[1], now_us, r[3]) for r in checked]
        return CheckedPush(target, checked, to)

    def write(self, push: CheckedPush, *, credential: Credential | None = None) -> PushResult:
        """Write a checked push: online through the monotonic writer, offline buffered."""
        target, checked, to = push.target, push.rows, push.to
        label = target.layout.label
        stats = None
        if to != "offline":
            stats = self._write_online(target.layout, checked)
        if to != "online":
            self.buffer.add(target.view, target.layout.version, checked)
        self.lineage.count(
            target.layout.view,
            target.layout.version,
            pushes=1,
            rows=len(checked),
            online=stats.written if stats else 0,
        )
        self._start()
        self.on_decision(
            {
                "action": "push",
                "subject": label,
                "decision": "allow",
                "detail": {
                    "at": "online",
                    "key": credential.label if credential is not None else None,
                    "features": [label],
                },
            }
        )
        return PushResult(
            view=target.layout.view,
            version=target.layout.version,
            to=to,
            rows=len(checked),
            online_written=stats.written if stats else 0,
            online_skipped_older=stats.skipped_older if stats else 0,
            online_skipped_expired=stats.skipped_expired if stats else 0,
            offline_buffered=len(checked) if to != "online" else 0,
        )

    def _write_online(self, layout: ViewLayout, rows: list[Row]) -> WriteStats:
        return self.online.write(layout, rows)

    def _target(self, view: str, version: int | None) -> _Target:
        snapshot = self.snapshot()
        vv = snapshot.view_version(view, version)  # FeatureViewNotFound / VersionNotFound
        key = (snapshot.serial, vv.view, vv.version)
        target = self._targets.get(key)
        if target is None:
            fv = snapshot.feature_view(vv.view, vv.version)
            if fv.aggregations:
                raise EntityInputError(
                    f"{vv.label}'s features are window aggregations the stream consumer "
                    "computes from events; push the events to its topic instead."
                )
            if len(self._targets) > 1000:
                self._targets.clear()  # older serials' entries
            target = self._targets[key] = _Target(
                fv,
                ViewLayout.from_view(snapshot.project, fv, vv.version),
                RowChecker(fv, vv.version, PushBounds.of(fv, max_rows=self.max_rows)),
            )
        return target

    # -- background -----------------------------------------------------------

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="featurestore-push", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.buffer.due()
                self.lineage.due()
            except Exception as exc:  # kept and retried at the next tick
                log.warning("push: landing or recording failed, will retry: %s", exc)

    def recover(self) -> int:
        """Land what crashed processes left in the spool; returns rows landed."""
        snapshot = self.snapshot()

        def view_of(view: str, version: int) -> FeatureView | None:
            vv = snapshot.versions.get(view, {}).get(version)
            return None if vv is None else snapshot.build_view(vv)

        return self.buffer.recover(view_of)

    def flush(self) -> None:
        """Land every buffered row and record every interval's counts."""
        self.buffer.flush()
        self.lineage.flush()

    def close(self) -> None:
        """Stop the background thread, then land and record everything."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.buffer.close()
        finally:
            self.lineage.flush()


def build_pusher(
    store: Any,
    snapshot: Callable[[], RegistrySnapshot],
    online: OnlineStore | None = None,
    **options: Any,
) -> Pusher:
    """A Pusher on a FeatureStore's online store (or ``online``), offline store folder,
    run log and audit queue, batching as the repo's ``push`` settings say. ``options``
    (overriding them, for tests): ``max_rows``, ``buffer_rows``, ``buffer_seconds``,
    ``interval_seconds``, ``tick_seconds``."""
    settings = store.config.push

    runs = store.registry.runs
    project = store.project

    def record(view: str, version: int, window: Any, counts: Any) -> None:
        runs.record_push(
            project,
            view,
            version,
            window,
            pushes=counts.pushes,
            rows=counts.rows,
            rows_online=counts.rows_online,
            rows_offline=counts.rows_offline,
        )

    buffer = OfflineBuffer(
        store.config.offline_store_path,
        project,
        max_rows=options.get("buffer_rows", settings.offline_batch_rows),
        max_seconds=options.get("buffer_seconds", settings.offline_flush_seconds),
        spool=Spool(store.config.state_dir / "push-spool" / project),
    )
    lineage = PushLineage(
        record, interval_seconds=options.get("interval_seconds", settings.run_interval_seconds)
    )
    pusher = Pusher(
        snapshot,
        online if online is not None else store.online_store,
        buffer,
        lineage,
        on_decision=store.audit_queue.put,
        max_rows=options.get("max_rows", settings.max_rows),
        tick_seconds=options.get("tick_seconds", 1.0),
    )
    try:
        recovered = pusher.recover()
    except Exception as exc:  # a broken spool must not stop a server starting
        log.warning("push: could not land the spool of crashed processes: %s", exc)
    else:
        if recovered:
            log.warning("push: landed %d rows a crashed process had buffered", recovered)
    return pusher
