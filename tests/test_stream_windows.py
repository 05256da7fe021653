"""Window aggregations: the stream processor and the batch side against a brute-force oracle,
on randomized event streams with out-of-order, tied and late events (pure logic, no Kafka)."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import (
    Aggregation,
    Entity,
    FeatureView,
    Field,
    Float64,
    Int64,
    KafkaSource,
    String,
    UnixTimestamp,
    expect_between,
)
from featurestore.streaming.events import BadEvent, EventParser, parse_time_us
from featurestore.streaming.landing import StreamPosition
from featurestore.streaming.processor import StreamProcessor
from featurestore.streaming.windows import WindowAggregator, batch_rows

S = 1_000_000
LATENESS_S = 30
WINDOWS = {"10s": 10, "60s": 60}

user = Entity(name="user", join_key="user_id", dtype=Int64)
source = KafkaSource(
    name="txns",
    topic="txns",
    timestamp_field="ts",
    allowed_lateness=timedelta(seconds=LATENESS_S),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="amount", dtype=Float64),
        Field(name="country", dtype=String),
        Field(name="ts", dtype=UnixTimestamp),
    ],
)
view = FeatureView(
    name="velocity",
    entities=[user],
    source=source,
    aggregations=[
        Aggregation(
            function=fn, column=None if fn == "count" else "amount", window=timedelta(seconds=w)
        )
        for w in WINDOWS.values()
        for fn in ("count", "sum", "mean", "min", "max", "last")
    ]
    + [
        Aggregation(
            function="count", column="amount", window=timedelta(seconds=10), name="n_amount"
        )
    ],
    expectations=[expect_between("amount", -1000, 1000)],
)
passthrough = FeatureView(
    name="latest_txn",
    entities=[user],
    source=source,
    schema=[Field(name="amount", dtype=Float64), Field(name="country", dtype=String)],
)


def oracle(events: list[tuple[int, int, int, float | None]], v: FeatureView) -> dict:
    """(key, t) -> features, computed from scratch for every accepted event."""
    out = {}
    for key, t, _seq, _amount in events:
        mine = [e for e in events if e[0] == key]
        feats = {}
        for a in v.aggregations:
            w = int(a.window.total_seconds() * S)
            inside = sorted((e for e in mine if t - w < e[1] <= t), key=lambda e: (e[1], e[2]))
            values = [e[3] for e in inside]
            present = [x for x in values if x is not None]
            feats[a.name] = {
                "count": len(present) if a.column else len(inside),
                "sum": math.fsum(present) if present else None,
                "mean": math.fsum(present) / len(present) if present else None,
                "min": min(present) if present else None,
                "max": max(present) if present else None,
                "last": values[-1] if values else None,
            }[a.function]
        out[(key, t)] = tuple(feats[f] for f in v.feature_names)
    return out


event_st = st.tuples(
    st.integers(0, 3),  # user
    st.integers(0, 200),  # event time, seconds (small range: many ties and overlaps)
    st.one_of(st.none(), st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 3))),
)


def run_stream(v: FeatureView, stream: list[tuple[int, int, float | None]]) -> tuple:
    proc = StreamProcessor(v, source)
    proc.assign(0, StreamPosition(), StreamPosition())
    accepted, dead = [], []
    for offset, (u, t, amount) in enumerate(stream):
        raw = orjson.dumps({"user_id": u, "amount": amount, "country": "DE", "ts": t})
        letter = proc.process(0, offset, raw)
        (dead if letter else accepted).append((u, t * S, offset, amount))
    return proc, accepted, dead


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_st, max_size=60))
def test_stream_and_batch_rows_equal_the_oracle(stream: list) -> None:
    proc, accepted, dead = run_stream(view, stream)
    expected = oracle(accepted, view)
    # The stream's rows: per (key, event time), the last one emitted (largest created) wins.
    got: dict = {}
    for key, t, created, features in proc.feature_rows:
        if (key, t) not in got or created >= got[(key, t)][0]:
            got[(key, t)] = (created, features)
    assert {k: f for k, (_, f) in got.items()} == expected
    # Online: each entity's row at its newest event.
    online = {keys[0]: (t, f) for keys, t, _, f in proc.online_rows()}
    for u in {e[0] for e in accepted}:
        newest = max(e[1] for e in accepted if e[0] == u)
        assert online[u] == (newest, expected[(u, newest)])
    # Batch over the accepted events (the event log) gives the same rows.
    agg = WindowAggregator(view)
    for u in {e[0] for e in accepted}:
        events = [(t, seq, [a]) for (k, t, seq, a) in accepted if k == u]
        assert {(u, t): f for t, f in batch_rows(agg, events)} == {
            k: f for k, f in expected.items() if k[0] == u
        }
    # Late: exactly the events older than their partition's newest minus the lateness.
    newest, late = None, 0
    for _u, t, _a in stream:
        if newest is not None and t * S < newest - LATENESS_S * S:
            late += 1
        else:
            newest = t * S if newest is None else max(newest, t * S)
    assert len(dead) == late


@settings(max_examples=80, deadline=None)
@given(st.lists(event_st, max_size=40))
def test_passthrough_rows_hold_the_last_event_at_each_time(stream: list) -> None:
    proc, accepted, _ = run_stream(passthrough, stream)
    got: dict = {}
    for key, t, created, features in proc.feature_rows:
        if (key, t) not in got or created >= got[(key, t)][0]:
            got[(key, t)] = (created, features)
    for (u, t), (_, features) in got.items():
        last = max((e for e in accepted if e[0] == u and e[1] == t), key=lambda e: e[2])
        assert features == (last[3], "DE")


def test_window_bounds_are_exclusive_below_and_inclusive_above() -> None:
    agg = WindowAggregator(view)
    rows = dict(batch_rows(agg, [(0, 0, [1.0]), (10 * S, 1, [2.0]), (10 * S + 1, 2, [4.0])]))
    names = view.feature_names
    at = {t: dict(zip(names, f, strict=True)) for t, f in rows.items()}
    assert at[10 * S]["count_10s"] == 1  # the event at 0 is exactly 10 s old: out
    assert at[10 * S]["count_1m"] == 2
    assert at[10 * S + 1]["amount_sum_10s"] == 6.0
    assert at[0]["amount_last_1m"] == 1.0


def test_an_exact_sum_does_not_depend_on_the_order_of_events() -> None:
    agg = WindowAggregator(view)
    values = [1e16, 1.0, -1e16, 1.0]
    forward = batch_rows(agg, [(i, i, [v]) for i, v in enumerate(values)])
    i = view.feature_names.index("amount_sum_10s")
    assert forward[-1][1][i] == 2.0  # a running float sum gives 1.0 or 0.0 here


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"user_id": 1, "amount": 5}', "field 'ts' (the event time) is missing"),
        (b'{"amount": 5, "ts": 10}', "field 'user_id' (the entity key) is missing"),
        (b'{"user_id": "1", "amount": 5, "ts": 10}', "field 'user_id': expected an integer"),
        (b'{"user_id": 1.5, "amount": 5, "ts": 10}', "field 'user_id': expected an integer"),
        (b'{"user_id": true, "amount": 5, "ts": 10}', "field 'user_id': expected an integer"),
        (b'{"user_id": 1, "amount": "5", "ts": 10}', "field 'amount': expected a number"),
        (b'{"user_id": 1, "amount": 5000, "ts": 10}', "expectation failed: amount between"),
        (b'{"user_id": 1, "amount": 5, "ts": "yesterday"}', "not an ISO-8601 time"),
        (b'{"user_id": 1, "amount": 5, "ts": 1700000000000}', "milliseconds?"),
    ],
)
def test_bad_events_get_a_reason(doc: bytes, reason: str) -> None:
    with pytest.raises(BadEvent, match=re.escape(reason)):
        EventParser(view, source).parse(doc)


def test_event_times_parse_exactly() -> None:
    assert parse_time_us("1970-01-01T00:00:01.000001") == S + 1
    assert parse_time_us("2026-01-01T01:00:00+01:00") == parse_time_us("2026-01-01T00:00:00Z")
    assert parse_time_us(1.5) == 1_500_000
    event: Any = EventParser(view, source).parse(b'{"user_id": 1, "amount": 2, "ts": 3}')
    assert event == {"user_id": 1, "amount": 2.0, "country": None, "ts": 3 * S}


long_event_st = st.tuples(
    st.integers(0, 2),
    st.integers(0, 1500),  # long enough for windows to slide and old events to be evicted
    st.one_of(st.none(), st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 1))),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(long_event_st, min_size=100, max_size=300).map(lambda e: sorted(e, key=lambda x: x[1]))
)
def test_long_mostly_ordered_streams_slide_and_evict_correctly(stream: list) -> None:
    # Sorted by time, then a few swapped: the running windows, their rebuilds after an
    # out-of-order event and chunked eviction all get exercised.
    for i in range(0, len(stream) - 1, 17):
        stream[i], stream[i + 1] = stream[i + 1], stream[i]
    proc, accepted, _ = run_stream(view, stream)
    expected = oracle(accepted, view)
    got: dict = {}
    for key, t, created, features in proc.feature_rows:
        if (key, t) not in got or created >= got[(key, t)][0]:
            got[(key, t)] = (created, features)
    assert {k: f for k, (_, f) in got.items()} == expected
    agg = WindowAggregator(view)
    for u in {e[0] for e in accepted}:
        events = [(t, seq, [a]) for (k, t, seq, a) in accepted if k == u]
        assert {(u, t): f for t, f in batch_rows(agg, events)} == {
            k: f for k, f in expected.items() if k[0] == u
        }
