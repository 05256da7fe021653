"""Dead letters: refused events sent to ``<topic>.dlq``, and read back.

A dead letter's value is the event's original bytes; its headers say why and where it
came from: ``id`` (``<topic>/<partition>/<offset>``, plus ``@<epoch>`` after a recreated
topic: the same each time the event is refused, so readers can drop repeats after a
crash), ``reason``, ``view``, ``topic``, ``partition`` and ``offset``. One that does not fit
(key and value over ``MAX_BYTES``, or refused by the broker as too large) is truncated to
``KEEP_BYTES`` of value, with ``truncated``, ``original_size`` and ``sha256`` headers.

The sender keeps each send's future until ``confirm``: the consumer lands nothing past
an event whose dead letter is not confirmed. A letter that cannot be sent at all halts
the sender (``halted``), and the consumer then lands nothing more, so a restart reads
the event again.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, MessageSizeTooLargeError

from featurestore.errors import StreamError
from featurestore.streaming.processor import DeadLetter

MAX_BYTES = 1_000_000  # the producer's default max_request_size is 1 MiB; headers need room
KEEP_BYTES = 64 * 1024


def dead_letter_id(topic: str, partition: int, offset: int, epoch_us: int | None) -> str:
    base = f"{topic}/{partition}/{offset}"
    return base if epoch_us is None else f"{base}@{epoch_us}"


def too_large(exc: BaseException) -> bool:
    return isinstance(exc, MessageSizeTooLargeError) or type(exc).__name__ in (
        "RecordListTooLargeError",
        "MessageSizeTooLargeError",
    )


class DeadLetterSender:
    """Sends one view's dead letters to its dead-letter topic."""

    def __init__(self, producer: KafkaProducer, topic: str, source_topic: str, label: str):
        self.producer = producer
        self.topic = topic
        self.source_topic = source_topic
        self.label = label
        self.truncated = 0
        self.halted = False
        # Sent since the last confirm: (future, letter, key, value, epoch).
        self.pending: list[tuple[Any, DeadLetter, bytes | None, bytes | None, int | None]] = []

    def send(
        self,
        letter: DeadLetter,
        key: bytes | None,
        value: bytes | None,
        epoch_us: int | None,
        *,
        shrink: bool = False,
    ) -> None:
        """Send one dead letter, truncated if it does not fit (or ``shrink``)."""
        headers = [
            ("id", dead_letter_id(self.source_topic, letter.partition, letter.offset, epoch_us)),
            ("reason", letter.reason),
            ("view", self.label),
            ("topic", self.source_topic),
            ("partition", str(letter.partition)),
            ("offset", str(letter.offset)),
        ]
        sent_key, sent_value = key, value
        if shrink or len(key or b"") + len(value or b"") > MAX_BYTES:
            sent_key = (key or b"")[:1024] or None
            sent_value = (value or b"")[:KEEP_BYTES]
            headers += [
                ("truncated", "true"),
                ("original_size", str(len(value or b""))),
                ("sha256", hashlib.sha256(value or b"").hexdigest()),
            ]
            self.truncated += 1
        try:
            future = self.producer.send(
                self.topic,
                value=sent_value,
                key=sent_key,
                headers=[(k, v.encode()) for k, v in headers],
            )
        except MessageSizeTooLargeError as exc:
            if shrink:
                raise self.halt(
                    f"the dead letter of partition {letter.partition} offset {letter.offset} "
                    f"does not fit the producer even truncated to {KEEP_BYTES:,} bytes ({exc}). "
                    "Raise the producer's max_request_size"
                ) from None
            self.send(letter, key, value, epoch_us, shrink=True)
            return
        except KafkaError as exc:
            raise self.halt(
                f"cannot send a dead letter to '{self.topic}' ({exc}). Create the topic "
                "(`featurestore stream create-topic VIEW`) or fix the broker"
            ) from None
        self.pending.append((future, letter, key, value, epoch_us))

    def halt(self, what: str) -> StreamError:
        """A dead letter is lost: from now on the consumer lands nothing."""
        self.halted = True
        return StreamError(
            f"{self.label}: {what}, then restart the consumer: it stopped without landing "
            "past the event (it reads it again)."
        )

    def confirm(self) -> None:
        """Every letter sent since the last confirm is in its topic (too-large ones sent
        again truncated), or StreamError with the sender halted."""
        for _attempt in range(2):
            self.producer.flush()
            pending, self.pending = self.pending, []
            for future, letter, key, value, epoch in pending:
                exc = future.exception if future.failed() else None
                if exc is None:
                    continue
                if too_large(exc):
                    self.send(letter, key, value, epoch, shrink=True)
                    continue
                raise self.halt(
                    f"the dead letter of partition {letter.partition} offset {letter.offset} "
                    f"was not accepted by '{self.topic}' ({exc}). Wait until the broker takes "
                    "writes again"
                )
            if not self.pending:
                return
        raise self.halt(
            f"'{self.topic}' refused dead letters even truncated to {KEEP_BYTES:,} bytes. "
            "Raise the topic's max.message.bytes"
        )


def read_dead_letters(
    consumer: KafkaConsumer, topic: str, *, view: str, source_topic: str, limit: int
) -> list[dict[str, Any]]:
    """The newest ``limit`` dead letters of ``topic``, one per id, newest first."""
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    if not parts:
        return []
    consumer.assign(parts)
    ends = consumer.end_offsets(parts)
    begins = consumer.beginning_offsets(parts)
    for tp in parts:
        consumer.seek(tp, max(begins[tp], ends[tp] - limit))
    # Read until the topic is quiet rather than to its end_offsets, which a broker may
    # answer short (seeking from a short end reads more, never less).
    deadline = time.monotonic() + 30
    idle_since, quiet = time.monotonic(), 2.0  # the first fetch takes longer
    letters = []
    while time.monotonic() - idle_since < quiet and time.monotonic() < deadline:
        for _tp, records in consumer.poll(timeout_ms=200).items():
            idle_since, quiet = time.monotonic(), 0.5
            letters += [letter_of(r, view, source_topic) for r in records]
    return unique_letters(letters)[:limit]


def letter_of(record: Any, view: str, source_topic: str) -> dict[str, Any]:
    headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
    value = record.value or b""
    return {
        "id": headers.get("id", ""),
        "view": headers.get("view", view),
        "topic": headers.get("topic", source_topic),
        "partition": int(headers.get("partition", -1)),
        "offset": int(headers.get("offset", -1)),
        "reason": headers.get("reason", "?"),
        "value": value.decode(errors="replace"),
        "timestamp_ms": record.timestamp,
        "truncated": headers.get("truncated") == "true",
        "original_size": int(headers.get("original_size", len(value))),
        "sha256": headers.get("sha256"),
    }


def unique_letters(letters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newest first, one per id (a crash may have sent a dead letter twice); ``repeats``
    counts the copies. Letters without an id (older consumers) are all kept."""
    letters = sorted(letters, key=lambda d: d["timestamp_ms"], reverse=True)
    out: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    for d in letters:
        first = by_id.get(d["id"]) if d["id"] else None
        if first is not None:
            first["repeats"] += 1
            continue
        d["repeats"] = 0
        if d["id"]:
            by_id[d["id"]] = d
        out.append(d)
    return out
