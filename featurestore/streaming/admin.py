"""Looking at a stream and repairing it: topics, the group's lag and this machine's
consumers, dead letters, and `stream repair` (what events from the future left)."""

from __future__ import annotations

import os
from typing import Any

import orjson
from kafka import TopicPartition

from featurestore.errors import StreamError
from featurestore.online.layout import ViewLayout
from featurestore.store import FeatureStore
from featurestore.streaming.consumer import (
    bootstrap_servers,
    dlq_topic,
    group_id,
    reader,
    stream_view,
)
from featurestore.streaming.dead_letters import read_dead_letters
from featurestore.streaming.landing import Landing
from featurestore.streaming.processor import StreamProcessor
from featurestore.streaming.repair import RepairReport, repair


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_consumers(store: FeatureStore, view: str) -> list[dict[str, Any]]:
    """Status documents of this machine's live consumers of ``view`` (stale ones removed)."""
    out = []
    for path in sorted((store.config.state_dir / "stream").glob(f"{view}.*.json")):
        doc = orjson.loads(path.read_bytes())
        if _alive(int(doc["pid"])):
            out.append(doc)
        else:
            path.unlink(missing_ok=True)  # a consumer that is gone
    return out


def repair_future(store: FeatureStore, name: str) -> RepairReport:
    """Remove rows of events from the future (past now + the source's max_future_skew)
    from the view's offline tables and online values, and reset poisoned watermarks."""
    view, version, source = stream_view(store, name)
    running = running_consumers(store, view.name)
    if running:
        pids = ", ".join(str(d["pid"]) for d in running)
        raise StreamError(
            f"{view.name}@v{version}: consumers are running on this machine (pid {pids}); "
            "stop them (SIGTERM) before `featurestore stream repair`, then start them again."
        )
    root = store.offline_store().table(view.name, version).root
    landing = Landing(root, view, source)
    layout = ViewLayout.from_view(store.project, view, version)
    writer = store.online_writer() if view.online else None
    bound = StreamProcessor(view, source).future_bound_us()
    return repair(landing, layout, writer, bound)


def create_topic(store: FeatureStore, name: str, partitions: int) -> bool:
    """Create the view's topic (and its dead-letter topic); False if it already existed."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    _view, _version, source = stream_view(store, name)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers(store, source), request_timeout_ms=10_000
    )
    try:
        created = True
        for topic, count in ((source.topic, partitions), (dlq_topic(source), 1)):
            try:
                admin.create_topics([NewTopic(topic, num_partitions=count, replication_factor=1)])
            except TopicAlreadyExistsError:
                created = created and topic != source.topic
        return created
    finally:
        admin.close()


def group_status(store: FeatureStore, name: str) -> dict[str, Any]:
    """The group's lag per partition (from Kafka) and this machine's running consumers."""
    view, version, source = stream_view(store, name)
    group = group_id(store, view.name, version)
    # A consumer that never subscribes does not join the group: it only reads offsets.
    consumer = reader(bootstrap_servers(store, source), group_id=group)
    try:
        parts = [
            TopicPartition(source.topic, p)
            for p in consumer.partitions_for_topic(source.topic) or ()
        ]
        ends = consumer.end_offsets(parts)
        committed = {tp.partition: consumer.committed(tp) or 0 for tp in parts}
    finally:
        consumer.close()
    lag = {
        str(tp.partition): max(0, end - committed.get(tp.partition, 0))
        for tp, end in sorted(ends.items())
    }
    consumers = running_consumers(store, view.name)
    return {
        "view": f"{view.name}@v{version}",
        "group": group,
        "topic": source.topic,
        "lag": lag,
        "total_lag": sum(lag.values()),
        "consumers": consumers,
    }


def recent_dead_letters(store: FeatureStore, names: list[str], *, limit: int) -> list[dict]:
    """The newest ``limit`` dead letters of each view's topic, one per id, newest first."""
    out: list[dict[str, Any]] = []
    for name in names:
        _view, _version, source = stream_view(store, name)
        consumer = reader(bootstrap_servers(store, source))
        try:
            out += read_dead_letters(
                consumer, dlq_topic(source), view=name, source_topic=source.topic, limit=limit
            )
        finally:
            consumer.close()
    return out
