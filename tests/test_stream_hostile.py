"""The stream consumer against hostile producers and a broker that answers wrongly: events
from the future, short ``end_offsets``, a recreated topic, oversized bad events, a dead-letter
topic that refuses, and restarts in a loop. Every produced event is accounted for exactly
once offline (landed or dead-lettered), against the real broker, Redis and Parquet."""

from __future__ import annotations

import random
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from typer.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import app
from featurestore.errors import FeatureStoreError
from featurestore.streaming import admin as stream_admin
from featurestore.streaming import consumer as stream_job
from featurestore.streaming.dead_letters import unique_letters
from featurestore.streaming.landing import OFFSET, PARTITION, record_digest
from featurestore.streaming.topic_check import Found, judge
from featurestore.times import micros
from tests.test_stream import (
    NOW,
    check_equals_replay,
    consume_in_thread,
    event,
    landed_position,
    offline_rows,
    online,
    random_events,
    recreate_topic,
    start_consumer,
    stream_repo,
)

pytestmark = [pytest.mark.services]


@pytest.fixture
def repo(tmp_path: Path, services: Any) -> tuple[Path, str]:
    return stream_repo(tmp_path, services)


def produce_counted(
    bootstrap: str, topic: str, events: list[Any], **options: Any
) -> list[tuple[int, int]]:
    """Produce keyed events; returns the (partition, offset) the broker gave each one (the
    truth, unlike the broker's end_offsets answers)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **options)
    futures = []
    for e in events:
        raw = e if isinstance(e, bytes) else orjson.dumps(e)
        key = str(e["user_id"]).encode() if isinstance(e, dict) and "user_id" in e else b"x"
        futures.append(producer.send(topic, value=raw, key=key))
    producer.flush()
    out = [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    producer.close()
    return out


def wait_landed(store: FeatureStore, produced: list[tuple[int, int]], timeout: float = 60) -> None:
    want: dict[int, int] = {}
    for p, o in produced:
        want[p] = max(want.get(p, 0), o + 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pos = landed_position(store)
        if all(pos.offsets.get(p, 0) >= o for p, o in want.items()):
            return
        time.sleep(0.2)
    raise AssertionError(f"not landed within {timeout}s: {landed_position(store)} vs {want}")


def dead_letters(store: FeatureStore) -> list[dict[str, Any]]:
    """Every dead letter of the view's topic (repeats included), read to its true end."""
    return stream_admin.recent_dead_letters(store, ["velocity"], limit=100_000)


def future_event(user: int, ts: str, amount: float = 1.0) -> dict[str, Any]:
    return {"user_id": user, "amount": amount, "currency": "EUR", "event_timestamp": ts}


def stop(consumer: Any, thread: Any) -> None:
    consumer.stop.set()
    thread.join(30)
    assert not thread.is_alive()


# -- events from the future -------------------------------------------------------------


def test_events_from_the_future_are_dead_letters_and_never_move_the_watermark(
    repo: tuple[Path, str], services: Any
) -> None:
    path, topic = repo
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    events = [
        event(1, 0, 10.0),
        future_event(1, ahead),  # a producer whose clock runs an hour fast
        future_event(1, "9999-12-31T23:59:59+00:00"),
        event(1, 5, 20.0),  # normal events after them: must not be "late"
        event(1, 9, 30.0),
    ]
    produced = produce_counted(services.kafka_bootstrap, topic, events)
    with FeatureStore(path) as store:
        consumer, thread = consume_in_thread(store)
        wait_landed(store, produced)  # dead letters included: the position is past them
        stop(consumer, thread)
        assert online(store, [1])["amount_last_1d"] == [30.0]
        assert online(store, [1])["count_10m"] == [3]
        letters = dead_letters(store)
        assert sorted(d["reason"].split(":")[0] for d in letters) == ["future", "future"]
        assert all("ahead of the consumer's clock" in d["reason"] for d in letters)
        position = landed_position(store)
        bound = micros(datetime.now(UTC) + timedelta(minutes=5))
        assert position.max_event_us
        assert max(position.max_event_us.values()) <= bound
        logged = offline_rows(store, "_events")
        assert len(logged) == 3
        assert all(r["event_timestamp"] <= datetime.now(UTC) for r in logged)
        assert all(r["event_timestamp"] <= datetime.now(UTC) for r in offline_rows(store))


POISONABLE = "allowed_lateness=timedelta(minutes=10),"


def test_a_partition_poisoned_before_the_bound_recovers_with_stream_repair(
    repo: tuple[Path, str], services: Any
) -> None:
    """A partition poisoned by an earlier version (reproduced with a bound so wide that it
    lets 9999-12-31 in): the consumer goes on from the sane watermark, and `stream repair`
    removes the future rows offline and online."""
    path, topic = repo
    defs = path / "defs.py"
    original = defs.read_text()
    defs.write_text(
        original.replace(POISONABLE, POISONABLE + " max_future_skew=timedelta(days=3_000_000),")
    )
    with FeatureStore(path) as store:
        store.apply()
        assert stream_job.stream_view(store, "velocity")[1] == 1  # the bound is no version
    produced = produce_counted(
        services.kafka_bootstrap,
        topic,
        [event(1, 0, 10.0), future_event(1, "9999-12-31T00:00:00+00:00", 77.0)],
    )
    with FeatureStore(path) as store:
        consumer, thread = consume_in_thread(store)
        wait_landed(store, produced)
        stop(consumer, thread)
        assert online(store, [1])["amount_last_1d"] == [77.0]  # poisoned, as on main
        assert max(landed_position(store).max_event_us.values()) > micros(NOW) * 2
    defs.write_text(original)  # the default bound (5 minutes) again
    with FeatureStore(path) as store:
        store.apply()
        notes: list[str] = []
        consumer, thread = consume_in_thread(store, progress=notes.append)
        produced = produce_counted(services.kafka_bootstrap, topic, [event(1, 3, 20.0)])
        wait_landed(store, produced)
        stop(consumer, thread)
        assert any("stream repair velocity" in n for n in notes), notes
        # Accepted, not late (the watermark was the poisoned 9999 one before).
        assert dead_letters(store) == []
        assert len(offline_rows(store, "_events")) == 3
        assert online(store, [1])["amount_last_1d"] == [77.0]  # still pinned online
    result = CliRunner().invoke(app, ["stream", "repair", "velocity", "--repo", str(path)])
    assert result.exit_code == 0, result.output
    assert "removed 1 feature rows and 1 logged events" in result.output
    # (The consumer's landing already replaced the poisoned watermark with its sane one.)
    with FeatureStore(path) as store:
        got = online(store, [1])
        assert got["amount_last_1d"] == [20.0]
        assert got["count_10m"] == [2]  # the events at minutes 0 and 3
        assert all(r["amount"] != 77.0 for r in offline_rows(store, "_events"))
        assert len(offline_rows(store, "_events")) == 2
        assert all(r["amount_last_1d"] != 77.0 for r in offline_rows(store))
        marks = landed_position(store).max_event_us
        assert max(marks.values()) == micros(NOW - timedelta(hours=2) + timedelta(minutes=3))
        # Idempotent: nothing left to repair.
        again = CliRunner().invoke(app, ["stream", "repair", "velocity", "--repo", str(path)])
        assert "nothing to repair" in again.output, again.output


# -- a broker that answers wrongly ------------------------------------------------------


def test_short_end_offsets_never_make_a_restart_duplicate_offline_rows(
    repo: tuple[Path, str], services: Any
) -> None:
    path, topic = repo
    # Batches of 10 and 5 records on one partition: the bundled broker then answers an
    # end offset of 11 (the last batch's base offset + 1), not 15.
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, linger_ms=200)
    for n, start in ((10, 0), (5, 10)):
        for i in range(n):
            producer.send(topic, orjson.dumps(event(1, start + i, 1.0)), partition=0)
        producer.flush()
    producer.close()
    produced = [(0, o) for o in range(15)]
    tp = TopicPartition(topic, 0)
    probe = KafkaConsumer(bootstrap_servers=services.kafka_bootstrap)
    reported = probe.end_offsets([tp])[tp]
    probe.close()
    assert reported < 15, "the broker answers end offsets right now: the test shows nothing"
    with FeatureStore(path) as store:
        for _round in range(3):
            notes: list[str] = []
            consumer, thread = consume_in_thread(store, progress=notes.append)
            wait_landed(store, produced)
            stop(consumer, thread)
            assert not any("recreated" in n for n in notes), notes
            assert consumer.stats.topic_restarts == 0
        assert any("the answer was wrong" in n for n in notes), notes
        logged = offline_rows(store, "_events")
        assert sorted((r[PARTITION], r[OFFSET]) for r in logged) == produced
        assert len(offline_rows(store)) == 15
        assert online(store, [1])["count_10m"] == [10]


def test_a_topic_recreated_with_more_events_is_told_by_its_records(
    repo: tuple[Path, str], services: Any
) -> None:
    """The recreated partitions reach past the landed offsets, so no offset answer shows
    it: the record at the landed offset does."""
    path, topic = repo
    first = produce_counted(services.kafka_bootstrap, topic, [event(u, 0, 1.0) for u in range(8)])
    with FeatureStore(path) as store:
        consumer, thread = consume_in_thread(store)
        wait_landed(store, first)
        stop(consumer, thread)
        recreate_topic(services.kafka_bootstrap, topic)
        second = produce_counted(
            services.kafka_bootstrap,
            topic,
            [event(u, m, 5.0) for u in range(8) for m in range(1, 6)],
        )
        notes: list[str] = []
        consumer, thread = consume_in_thread(store, progress=notes.append)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and online(store, list(range(8)))["count_10m"] != [5] * 8:
            time.sleep(0.2)
        stop(consumer, thread)  # lands what is pending
        assert any("different record" in n and "recreated" in n for n in notes), notes
        assert consumer.stats.topic_restarts >= 1
        # The new epoch's five events each (none skipped; the old topic's are not in its
        # windows).
        assert online(store, list(range(8)))["count_10m"] == [5] * 8
        assert len(offline_rows(store, "_events")) == len(first) + len(second)


def test_judge_trusts_records_not_offset_answers() -> None:
    d = "a" * 16
    same, other = Found(9, d), Found(9, "b" * 16)
    assert judge(0, 10, d, same, 0, 10).verdict == "keep"
    short = judge(0, 10, d, same, 0, 3)  # a short end answer
    assert short.verdict == "keep"
    assert "wrong" in short.note
    assert judge(0, 10, d, other, 0, 50).verdict == "recreated"
    assert judge(0, 10, None, other, 0, 50).verdict == "keep"  # no digest: old manifests
    assert judge(0, 10, d, None, 0, 4).verdict == "recreated"  # gone, and both answers agree
    assert judge(0, 10, d, Found(2, "c" * 16), 0, 4).verdict == "recreated"  # put back
    assert judge(0, 10, d, None, 0, 50).verdict == "keep"  # slow broker: never re-read
    assert judge(0, 10, d, None, 12, 12).verdict == "retention"
    assert judge(0, 10, d, Found(15, "c" * 16), 15, 20).verdict == "retention"


# -- oversized events and dead letters --------------------------------------------------


def big_bad_event(size: int) -> dict[str, Any]:
    return {**event(3, 1, -1.0), "padding": "x" * size}


def test_an_oversized_bad_event_is_dead_lettered_truncated_and_the_stream_goes_on(
    repo: tuple[Path, str], services: Any
) -> None:
    path, topic = repo
    events = [event(3, 0, 1.0), big_bad_event(4_000_000), event(3, 2, 2.0)]
    produced = produce_counted(services.kafka_bootstrap, topic, events, max_request_size=8_000_000)
    big_size = len(orjson.dumps(events[1]))
    with FeatureStore(path) as store:
        consumer, thread = consume_in_thread(store)
        wait_landed(store, produced)
        stop(consumer, thread)
        assert online(store, [3])["amount_last_1d"] == [2.0]
        (letter,) = dead_letters(store)
        assert letter["reason"].startswith("too large: 4,000,")
        assert letter["truncated"] is True
        assert letter["original_size"] == big_size
        assert len(letter["value"]) == 64 * 1024
        assert letter["sha256"]
        assert len(letter["sha256"]) == 64
        partition, offset = produced[1]
        assert letter["id"] == f"{topic}/{partition}/{offset}"
        assert (letter["partition"], letter["offset"]) == (partition, offset)
        cli = CliRunner().invoke(
            app, ["stream", "dlq", "velocity", "--reason", "too large", "--repo", str(path)]
        )
        assert cli.exit_code == 0, cli.output
        assert f"{topic}/{partition}/{offset}" in cli.output
        assert f"truncated: {big_size:,} bytes" in cli.output


def test_a_dead_letter_that_cannot_be_sent_stops_the_consumer_before_landing_past_it(
    repo: tuple[Path, str], services: Any
) -> None:
    path, topic = repo
    produced = produce_counted(
        services.kafka_bootstrap,
        topic,
        [event(4, 0, 1.0), big_bad_event(200_000), event(4, 2, 2.0)],
    )
    _partition, bad_offset = produced[1]
    with FeatureStore(path) as store:
        consumer = stream_job.StreamConsumer(store, "velocity", flush_seconds=0.3)
        consumer.connect()
        assert consumer.producer is not None
        consumer.producer.close()
        # A real producer that takes nothing this large, even truncated to 64 KiB.
        consumer.producer = KafkaProducer(
            bootstrap_servers=services.kafka_bootstrap, max_request_size=10_000
        )
        assert consumer.letters is not None
        consumer.letters.producer = consumer.producer
        with pytest.raises(FeatureStoreError, match="stopped without landing past the event"):
            consumer.run()
        assert landed_position(store).offsets.get(produced[1][0], 0) <= bad_offset
        consumer, thread = consume_in_thread(store)  # a normal producer again
        wait_landed(store, produced)
        stop(consumer, thread)
        (letter,) = dead_letters(store)
        assert letter["offset"] == bad_offset
        assert online(store, [4])["amount_last_1d"] == [2.0]


def test_unique_letters_keeps_one_per_id_and_counts_repeats() -> None:
    letters = [
        {"id": "t/0/5", "timestamp_ms": 1},
        {"id": "t/0/5", "timestamp_ms": 3},
        {"id": "t/0/6", "timestamp_ms": 2},
        {"id": "", "timestamp_ms": 0},
        {"id": "", "timestamp_ms": 0},
    ]
    out = unique_letters([dict(d) for d in letters])
    assert [(d["id"], d["repeats"]) for d in out] == [
        ("t/0/5", 1),
        ("t/0/6", 0),
        ("", 0),
        ("", 0),
    ]


# -- all of it, with restarts in a loop -------------------------------------------------


def hostile_events(rng: random.Random, n: int, start_minute: float) -> list[Any]:
    out: list[Any] = random_events(rng, n, start_minute)
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for _ in range(5):
        out.insert(rng.randrange(len(out)), future_event(rng.randrange(40), ahead))
    out.insert(rng.randrange(len(out)), future_event(7, "9999-12-31T00:00:00+00:00"))
    out.insert(rng.randrange(len(out)), big_bad_event(4_000_000))
    out.insert(rng.randrange(len(out)), b"\xff\xfe not json")
    return out


def test_restarts_in_a_loop_account_for_every_produced_event_exactly_once(
    repo: tuple[Path, str], services: Any
) -> None:
    path, topic = repo
    rng = random.Random(15)
    produced: list[tuple[int, int]] = []
    for round_ in range(4):
        produced += produce_counted(
            services.kafka_bootstrap,
            topic,
            hostile_events(rng, 1500, 20 * round_),
            max_request_size=8_000_000,
        )
        proc = start_consumer(path)
        time.sleep(rng.uniform(4.5, 7.0))
        proc.kill() if round_ % 2 == 0 else proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    # The broker answers short end offsets for this topic (what once made restarts re-read).
    probe = KafkaConsumer(bootstrap_servers=services.kafka_bootstrap)
    parts = [TopicPartition(topic, p) for p in range(4)]
    reported = {tp.partition: o for tp, o in probe.end_offsets(parts).items()}
    probe.close()
    assert any(reported[p] <= max(o for q, o in produced if q == p) for p in reported)
    proc = start_consumer(path)
    with FeatureStore(path) as store:
        wait_landed(store, produced, timeout=120)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "recreated" not in out, out
        logged = [(r[PARTITION], r[OFFSET]) for r in offline_rows(store, "_events")]
        assert len(logged) == len(set(logged)), "an event landed twice"
        letters = dead_letters(store)
        ids = {d["id"] for d in letters}
        dead = {(int(i.split("/")[1]), int(i.split("/")[2])) for i in ids}
        assert not dead & set(logged), "an event both landed and dead-lettered"
        assert dead | set(logged) == set(produced), "an event neither landed nor dead"
        reasons = {d["reason"].split(":")[0] for d in letters}
        assert {"future", "too large", "not valid JSON", "expectation failed"} <= reasons
        check_equals_replay(store, services.kafka_bootstrap, topic)
        bound = micros(datetime.now(UTC) + timedelta(minutes=5))
        assert max(landed_position(store).max_event_us.values()) <= bound


def test_record_digest_tells_records_apart() -> None:
    assert record_digest(b"k", b"v") == record_digest(b"k", b"v")
    assert record_digest(b"k", b"v") != record_digest(b"kv", b"")
    assert record_digest(None, None) == record_digest(b"", b"")
