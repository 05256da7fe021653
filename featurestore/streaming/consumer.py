"""The streaming consumer: Kafka -> parse and check -> window aggregations -> Redis + Parquet.

One consumer per view version, in a consumer group (default
``featurestore.<project>.<view>.v<N>``): start more processes with the same group and
they split the topic's partitions. The loop:

1. poll a micro-batch (at most ``poll_ms`` of waiting);
2. each event is parsed and checked; a bad, too-late, too-early (``future``) or too-large
   one goes to ``<topic>.dlq`` (original bytes as the value, truncated if they do not fit;
   id, reason, topic, partition and offset as headers);
3. the window state advances, and every touched entity's newest row is written to
   the online store (event-time monotonic) right away: freshness is one poll;
4. every ``flush_seconds``: dead letters are flushed (and each send checked: nothing is
   landed past an event that is neither landed nor dead-lettered), the event log and the
   feature rows land in the offline store, each with the stream's position in its
   manifest commit, and only then are the offsets committed to Kafka.

After a crash the consumer resumes from the position in the offline manifests, rebuilding
its window state from the event log: rows already landed are skipped (no duplicates),
the online values are written again with the same values, nothing is lost. SIGTERM (or
Ctrl-C) finishes the current batch, lands it and commits before leaving the group.

On start the landed position of each partition is checked against the record it ends
with (``featurestore.streaming.topic_check``): broker offset answers alone never make a
consumer re-read a partition.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from featurestore.definitions import FeatureView, KafkaSource
from featurestore.errors import OnlineStoreUnavailable, StreamError
from featurestore.online.layout import ViewLayout
from featurestore.stages import StageHook, no_stage
from featurestore.streaming import topic_check
from featurestore.streaming.dead_letters import DeadLetterSender
from featurestore.streaming.landing import Landing, StreamPosition, record_digest
from featurestore.streaming.processor import DeadLetter, StreamProcessor, format_us
from featurestore.streaming.status import Metrics, StreamStats, status_path, write_status
from featurestore.streaming.until import Until
from featurestore.urls import redact

if TYPE_CHECKING:
    from featurestore.store import FeatureStore  # the store calls this module

Progress = Callable[[str], None]
log = logging.getLogger(__name__)


def stream_view(store: FeatureStore, name: str) -> tuple[FeatureView, int, KafkaSource]:
    snapshot = store.snapshot()
    version = snapshot.latest_version(name)  # unknown view: raises with did-you-mean
    view = snapshot.feature_view(name, version)
    source = view.source
    if not isinstance(source, KafkaSource):
        raise StreamError(
            f"Feature view '{name}' reads a {type(source).__name__}, not a KafkaSource; batch "
            "views are materialized by `featurestore materialize`."
        )
    return view, version, source


def group_id(store: FeatureStore, view: str, version: int) -> str:
    return f"featurestore.{store.project}.{view}.v{version}"


def dlq_topic(source: KafkaSource) -> str:
    return f"{source.topic}.dlq"


def bootstrap_servers(store: FeatureStore, source: KafkaSource) -> str:
    return source.bootstrap_servers or store.config.kafka_bootstrap_servers


def reader(bootstrap: str, **options: Any) -> KafkaConsumer:
    """A consumer for looking (offsets, dead letters), or StreamError if Kafka is away."""
    try:
        return KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **options)
    except KafkaError as exc:
        # kafka-python's message repeats the servers: redact all of it.
        raise StreamError(redact(f"Cannot reach Kafka at {bootstrap} ({exc}).")) from None


def fetch_first(
    bootstrap: str, at: dict[TopicPartition, int], timeout_s: float = 3.0
) -> dict[TopicPartition, topic_check.Found]:
    """The first record a fetch at each offset returns (offset and digest); partitions
    that return nothing within ``timeout_s`` are missing from the answer."""
    consumer = reader(bootstrap, auto_offset_reset="earliest", max_poll_records=1)
    found: dict[TopicPartition, topic_check.Found] = {}
    try:
        consumer.assign(list(at))
        for tp, offset in at.items():
            consumer.seek(tp, max(0, offset))
        deadline = time.monotonic() + timeout_s
        while len(found) < len(at) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                if tp in at and tp not in found and records:
                    r = records[0]
                    found[tp] = topic_check.Found(r.offset, record_digest(r.key, r.value))
                    consumer.pause(tp)
    finally:
        consumer.close()
    return found


class Background:
    """One worker thread running ``work`` on submitted items in order, at most one item
    waiting; a failure is raised (through ``wrap``) by the next submit, check or drain."""

    def __init__(
        self, work: Callable[[Any], None], wrap: Callable[[BaseException], BaseException]
    ) -> None:
        self.work = work
        self.wrap = wrap
        self.items: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            item = self.items.get()
            try:
                if item is not _STOP and self.error is None:
                    self.work(item)
            except BaseException as exc:  # re-raised in the consumer's thread
                self.error = exc
            finally:
                self.items.task_done()
            if item is _STOP:
                return

    def submit(self, item: Any) -> None:
        self.check()
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="online-writer", daemon=True)
            self.thread.start()
        self.items.put(item)

    def check(self) -> None:
        if self.error is not None:
            raise self.wrap(self.error) from None

    def drain(self) -> None:
        if self.thread is not None:
            self.items.join()
        self.check()

    def stop(self) -> None:
        if self.thread is not None:
            self.items.put(_STOP)
            self.thread.join(timeout=30)
            self.thread = None


_STOP = object()


class StreamConsumer(ConsumerRebalanceListener):
    """Consumes one view version's topic until ``stop`` is set."""

    def __init__(
        self,
        store: FeatureStore,
        view_name: str,
        *,
        group: str | None = None,
        flush_seconds: float = 5.0,
        poll_ms: int = 100,
        max_records: int = 20_000,
        progress: Progress = lambda _m: None,
        metrics: Any = None,
        on_stage: StageHook = no_stage,
        until: Until | None = None,
    ) -> None:
        self.store = store
        self.until = until  # None: until ``stop`` is set
        self.view, self.version, self.source = stream_view(store, view_name)
        self.label = f"{self.view.name}@v{self.version}"
        self.group = group or group_id(store, self.view.name, self.version)
        self.bootstrap = bootstrap_servers(store, self.source)
        self.flush_seconds = flush_seconds
        self.poll_ms = poll_ms
        self.max_records = max_records
        self.progress = progress
        self.metrics = metrics
        self.on_stage = on_stage  # called at "events-landed": tests kill the process there
        self.stop = threading.Event()
        self.stats = StreamStats()
        self.processor = StreamProcessor(self.view, self.source)
        table_root = store.offline_store().table(self.view.name, self.version).root
        self.landing = Landing(table_root, self.view, self.source)
        self.layout = ViewLayout.from_view(store.project, self.view, self.version)
        self.writer = store.online_writer() if self.view.online else None
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        self._last_flush = time.monotonic()
        self._landed = StreamPosition()
        self.failure: Exception | None = None
        self._online = Background(self._write_rows, self._online_failed)
        self._restart_at: dict[int, int] = {}
        # Dead letters sent since the last landing: (future, letter, key, value), checked
        # before the landing moves past them.
        self.letters: DeadLetterSender | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def connect(self) -> None:
        try:
            self.consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=self.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self.max_records,
                # Faster group joins and failover than the defaults (measured with Tansu).
                session_timeout_ms=6000,
                heartbeat_interval_ms=1000,
                max_poll_interval_ms=60_000,
                client_id=f"featurestore-stream-{os.getpid()}",
            )
            self.producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
            self.letters = DeadLetterSender(
                self.producer, dlq_topic(self.source), self.source.topic, self.label
            )
        except KafkaError as exc:
            raise StreamError(
                redact(
                    f"{self.label}: cannot reach Kafka at {self.bootstrap} ({exc}). Start it "
                    "(`featurestore dev up` locally) or set kafka.bootstrap_servers in "
                    "featurestore.yaml."
                )
            ) from None
        topics = self.consumer.topics()
        if self.source.topic not in topics:
            self.close()
            raise StreamError(
                f"{self.label}: topic '{self.source.topic}' does not exist on "
                f"{redact(self.bootstrap)}. Create it with as many partitions as consumers you "
                f"want to run (`featurestore stream create-topic {self.view.name} --partitions "
                "N`) or point the source "
                f"'{self.source.name}' at an existing topic."
            )
        self._check_positions()
        self.consumer.subscribe([self.source.topic], listener=self)
        self.progress(f"{self.label}: consuming '{self.source.topic}' in group '{self.group}'")

    def _check_positions(self) -> None:
        """Check each partition's landed position against the record it ends with (see
        ``topic_check``): a partition whose topic was recreated restarts at its beginning
        with a fresh watermark (said loudly: log, progress, metrics); one whose events
        retention deleted goes on; a broker's wrong offset answer changes nothing."""
        assert self.consumer is not None
        features, _events = self.landing.positions()
        parts = [
            TopicPartition(self.source.topic, p)
            for p in self.consumer.partitions_for_topic(self.source.topic) or ()
        ]
        self._restart_at = {}
        landed = {
            tp: features.offsets[tp.partition] for tp in parts if features.offsets.get(tp.partition)
        }
        if not landed:
            return
        begins = self.consumer.beginning_offsets(parts)
        ends = self.consumer.end_offsets(parts)
        found = fetch_first(self.bootstrap, {tp: o - 1 for tp, o in landed.items()})
        for tp, offset in landed.items():
            decision = topic_check.judge(
                tp.partition,
                offset,
                features.digests.get(tp.partition),
                found.get(tp),
                begins[tp],
                ends[tp],
            )
            if decision.verdict == "recreated":
                self._restart_at[tp.partition] = begins[tp]
                self.stats.topic_restarts += 1
                if self.metrics:
                    self.metrics.topic_restarts.inc()
                log.warning("%s: %s", self.label, decision.note)
            if decision.note:
                self.progress(f"{self.label}: {decision.note}")

    def run(self, status: Path | None = None) -> StreamStats:
        """Consume until ``stop`` is set, then land, commit and leave the group.
        ``status``: a JSON file rewritten every second for `featurestore stream status`."""
        if self.consumer is None:
            self.connect()
        last, last_n = time.monotonic(), 0
        try:
            while not self.stop.is_set():
                if self.until is not None and self.until.reached(self):
                    break
                self.poll_once()
                now = time.monotonic()
                if now - self._last_flush >= self.flush_seconds:
                    self.flush()
                if status is not None and now - last >= 1.0:
                    write_status(self, status, (self.stats.accepted - last_n) / (now - last))
                    last, last_n = now, self.stats.accepted
            self.flush()
            if status is not None:
                write_status(self, status, 0.0)
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        self._online.stop()
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
            self.consumer = None
        if self.producer is not None:
            self.producer.close()
            self.producer = None

    # -- the loop ------------------------------------------------------------------------

    def poll_once(self) -> int:
        assert self.consumer is not None
        try:
            batches = self.consumer.poll(timeout_ms=self.poll_ms, max_records=self.max_records)
        except KafkaError:
            if self.failure is not None:
                raise self.failure from None
            raise
        n = 0
        for tp, records in batches.items():
            if tp.partition not in self.processor.partitions:
                continue  # revoked during this poll
            for record in records:
                letter = self.processor.process(tp.partition, record.offset, record.value)
                if letter is not None:
                    self._dead_letter(letter, record)
            state = self.processor.partitions[tp.partition]
            last = records[-1]
            if state.next_offset == last.offset + 1:  # kept with the landed position
                state.last_digest = record_digest(last.key, last.value)
            n += len(records)
        if n:
            self._write_online()
        else:
            self._online.check()
            # Never spin: an empty poll may return early, and a busy loop here would starve
            # the Kafka client's own I/O thread of the GIL.
            time.sleep(0.005)
        return n

    def _dead_letter(self, letter: DeadLetter, record: Any) -> None:
        assert self.letters is not None
        state = self.processor.partitions.get(letter.partition)
        epoch = state.epoch_us if state is not None else None
        self.letters.send(letter, record.key, record.value, epoch)
        self.stats.dead_letters += 1
        if self.metrics:
            self.metrics.dead_letters.inc()

    def _write_online(self) -> None:
        rows = self.processor.online_rows()
        accepted = self.processor.accepted
        self.stats.accepted += accepted
        self.processor.accepted = 0
        if self.metrics:
            self.metrics.events.inc(accepted)
        if self.writer is not None and rows:
            # Written by a background thread: Redis works (on another core) while this
            # thread parses the next poll. flush() waits for it before committing.
            self._online.submit(rows)

    def _write_rows(self, rows: list[Any]) -> None:
        """The online thread's work: one pipelined, event-time-monotonic write."""
        assert self.writer is not None
        written = self.writer.write(self.layout, rows)
        now_us = time.time_ns() // 1000
        fresh = self.stats.freshness_ms
        for _keys, event_us, _created, _values in rows:
            fresh.append((now_us - event_us) / 1000)
        if self.metrics:
            for _keys, event_us, _created, _values in rows[-100:]:
                self.metrics.freshness.observe((now_us - event_us) / 1e6)
        self.stats.online_writes += written.written

    def _online_failed(self, exc: BaseException) -> BaseException:
        if isinstance(exc, OnlineStoreUnavailable):
            return StreamError(
                f"{self.label}: {exc} The consumer stopped without committing; restart it "
                "when Redis is back (it resumes from the last landed batch)."
            )
        return exc

    def flush(self, *, commit: bool = True) -> None:
        """Land the pending rows offline, then commit the offsets to Kafka (``commit``;
        a rebalance callback may not block on Kafka, and the manifests suffice)."""
        proc = self.processor
        self._last_flush = time.monotonic()
        if self.letters is not None and self.letters.halted:
            return  # a dead letter was lost: land nothing past it
        self._online.drain()  # online writes done (or their error raised) before landing
        if self.letters is not None:
            self.letters.confirm()  # dead letters are durable before their offsets commit
            self.stats.truncated_dead_letters = self.letters.truncated
        self.stats.repeated += proc.repeated
        proc.repeated = 0
        position = proc.positions()
        if not position.offsets or (
            not proc.event_rows and not proc.feature_rows and position == self._landed
        ):
            return
        now_us = time.time_ns() // 1000
        events = proc.event_table(self.landing.events_schema, now_us)
        features = proc.feature_table(self.landing.features_schema)
        self.landing.append(self.landing.events, events, position)
        self.on_stage("events-landed")
        self.landing.append(self.landing.features, features, position)
        self.stats.logged_events += events.num_rows
        self.stats.offline_rows += features.num_rows
        self.stats.flushes += 1
        proc.feature_rows, proc.event_rows = [], []
        self._landed = position
        if commit and self.consumer is not None:
            offsets = {
                TopicPartition(self.source.topic, p): OffsetAndMetadata(o, "", -1)
                for p, o in position.offsets.items()
            }
            try:
                self.consumer.commit(offsets)
            except KafkaError as exc:
                # Not fatal: the offline manifests hold the position a restart resumes from.
                self.progress(f"{self.label}: committing offsets to Kafka failed ({exc})")
            self._update_lag()
        proc.evict_idle()

    def caught_up(self) -> bool:
        """Every assigned partition consumed to its end offset (no lag)."""
        self._update_lag()
        lag = self.stats.lag
        return bool(lag) and set(lag) == set(self.processor.partitions) and not any(lag.values())

    def _update_lag(self) -> None:
        assert self.consumer is not None
        parts = [TopicPartition(self.source.topic, p) for p in self.processor.partitions]
        if not parts:
            self.stats.lag = {}
            return
        try:
            ends = self.consumer.end_offsets(parts)
        except KafkaError:
            return
        self.stats.lag = {
            tp.partition: max(0, end - (self.processor.partitions[tp.partition].next_offset or 0))
            for tp, end in ends.items()
            if tp.partition in self.processor.partitions
        }
        if self.metrics:
            for p, lag in self.stats.lag.items():
                self.metrics.set_lag(p, lag)

    # -- rebalancing ---------------------------------------------------------------------

    def on_partitions_revoked(self, revoked: Any) -> None:
        try:
            self._revoke(revoked)
        except Exception as exc:
            self.failure = exc
            raise

    def _revoke(self, revoked: Any) -> None:
        # Called inside poll(), between batches: land what is pending, then let go.
        if any(tp.partition in self.processor.partitions for tp in revoked):
            self.flush(commit=False)
        for tp in revoked:
            self.processor.revoke(tp.partition)
        if revoked:
            self.progress(
                f"{self.label}: released partitions {sorted(tp.partition for tp in revoked)}"
            )

    def on_partitions_assigned(self, assigned: Any) -> None:
        # kafka-python reports a callback's failure without its cause: keep the cause.
        try:
            self._assign(assigned)
        except Exception as exc:
            self.failure = exc
            raise

    def _assign(self, assigned: Any) -> None:
        assert self.consumer is not None
        features, events = self.landing.positions()
        new = [tp for tp in assigned if tp.partition not in self.processor.partitions]
        before, since = {}, {}
        bound = self.processor.future_bound_us()
        for tp in new:
            watermark = None
            landed_mark = features.max_event_us.get(tp.partition)
            if landed_mark is not None and landed_mark > bound:
                watermark = self.landing.max_event_us(tp.partition, bound)
                note = (
                    f"partition {tp.partition}'s landed watermark "
                    f"({format_us(landed_mark)}) is more than max_future_skew ahead of this "
                    "clock: an event from the future was accepted before the bound existed. "
                    f"Going on from the newest sane event time ({format_us(watermark or 0)}); "
                    f"run `featurestore stream repair {self.view.name}` to remove its rows "
                    "from the stores."
                )
                log.warning("%s: %s", self.label, note)
                self.progress(f"{self.label}: {note}")
            start = self.processor.assign(
                tp.partition,
                features,
                events,
                restart_at=self._restart_at.get(tp.partition),
                watermark=watermark,
            )
            self.consumer.seek(tp, start)
            before[tp.partition] = start
            newest = self.processor.partitions[tp.partition].max_event_us
            if newest is not None:
                since[tp.partition] = newest - self.processor.reach_us
        # What the manifests hold for these partitions is landed: a flush with nothing new
        # writes no empty commit.
        self._landed = self._landed.merged(self.processor.positions(before))
        restored = 0
        if any(before.values()):
            table = self.landing.load_events(
                {p: o for p, o in before.items() if o},
                since,
                self.processor.restore_columns(),
                self.processor.positions().epoch_us,
            )
            for p in before:
                part = table.filter(table.column("_partition").to_numpy() == p)
                self.processor.restore(p, part)
            restored = table.num_rows
        if new:
            self.progress(
                f"{self.label}: assigned partitions {sorted(tp.partition for tp in new)} "
                f"(resuming at offsets {before}; {restored:,} events of window state restored)"
            )


# -- status ------------------------------------------------------------------------------


def run(
    store: FeatureStore,
    views: list[str],
    *,
    group: str | None = None,
    flush_seconds: float = 5.0,
    metrics_port: int | None = None,
    progress: Progress = lambda _m: None,
    handle_signals: bool = True,
    on_stage: StageHook = no_stage,
    until: Until | None = None,
) -> list[StreamStats]:
    """Consume the views' topics until SIGTERM/SIGINT or ``until`` (one thread per view)."""
    consumers = [
        StreamConsumer(
            store,
            v,
            group=group,
            flush_seconds=flush_seconds,
            progress=progress,
            on_stage=on_stage,
            until=until.fresh() if until is not None else None,
        )
        for v in views
    ]
    if metrics_port is not None:
        for i, c in enumerate(consumers):
            c.metrics = Metrics(c.label, metrics_port + i)
    for c in consumers:
        c.connect()
    # Restored afterwards: a notebook that streams for a while keeps its own Ctrl-C.
    signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
    previous = {s: signal.getsignal(s) for s in signals}
    if handle_signals:

        def stop(_signum: int, _frame: Any) -> None:
            progress("stopping: landing the current batch and committing ...")
            for c in consumers:
                c.stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    errors: list[BaseException] = []

    def loop(c: StreamConsumer) -> None:
        try:
            c.run(status_path(store, c.view.name))
        except BaseException as exc:  # re-raised by the main thread
            errors.append(exc)
            for other in consumers:
                other.stop.set()

    threads = [threading.Thread(target=loop, args=(c,), name=c.label) for c in consumers]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.5)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if errors:
        raise errors[0]
    return [c.stats for c in consumers]
