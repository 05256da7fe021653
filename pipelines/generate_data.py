"""Seeded generator for the example payments repo's sources.

Writes Hive-partitioned Parquet (``date=YYYY-MM-DD``) for the user profile
snapshots, the daily merchant statistics and the historical transactions,
and can produce live transaction events to Kafka. The same seed and end date
give the same rows. Each dataset is written beside its final folder and
swapped in with one rename, so a reader never sees half of it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from featurestore.config import RepoConfig

COUNTRIES = np.array(["DE", "FR", "GB", "NL", "ES", "IT", "US", "PL"])
CATEGORIES = np.array(["grocery", "fuel", "travel", "electronics", "fashion", "gaming", "food"])
TOPIC = "card_transactions"


@dataclass(frozen=True, slots=True)
class GeneratorSettings:
    users: int = 20_000
    merchants: int = 2_000
    days: int = 30
    transactions: int = 1_000_000
    seed: int = 7
    end: datetime | None = None  # exclusive; default: today 00:00 UTC

    def end_time(self) -> datetime:
        if self.end is not None:
            return self.end.astimezone(UTC)
        now = datetime.now(UTC)
        return datetime(now.year, now.month, now.day, tzinfo=UTC)


def _ts(seconds: np.ndarray) -> pa.Array:
    return pa.array(seconds.astype("int64") * 1_000_000, pa.timestamp("us", tz="UTC"))


def _dates(seconds: np.ndarray) -> pa.Array:
    days = (seconds // 86400).astype("int32")
    return pa.array(days, pa.date32()).cast(pa.string())


def user_profiles(s: GeneratorSettings, rng: np.random.Generator) -> pa.Table:
    start = int((s.end_time() - timedelta(days=s.days)).timestamp())
    span = s.days * 86400
    updates = rng.integers(1, 5, s.users)  # 1-4 snapshots per user
    user_id = np.repeat(np.arange(1, s.users + 1, dtype="int64"), updates)
    n = len(user_id)
    event = start + rng.integers(0, span, n)
    # Every holder has a profile from the start: training rows then find one, as lookups do.
    _users, first = np.unique(user_id, return_index=True)
    event[first] = start
    base_age = rng.integers(18, 80, s.users)
    age = base_age[user_id - 1]
    home = COUNTRIES[rng.integers(0, len(COUNTRIES), s.users)]
    country = home[user_id - 1]
    account_age = rng.integers(0, 3650, s.users)[user_id - 1] + (event - start) // 86400
    limit = np.round(rng.lognormal(8.0, 0.6, n), 2).clip(200, 50_000)
    # A few snapshots are corrected the same second by a later export: ties on
    # event time that created_timestamp breaks.
    created = event + rng.integers(0, 3600, n)
    emails = [f"user{u}@example.com" for u in user_id.tolist()]
    return pa.table(
        {
            "user_id": user_id,
            "email": pa.array(emails, pa.string()),
            "age": age.astype("int64"),
            "country": country,
            "account_age_days": account_age.astype("int64"),
            "credit_limit": limit,
            "event_timestamp": _ts(event),
            "created_timestamp": _ts(created),
            "date": _dates(event),
        }
    )


def merchant_stats(s: GeneratorSettings, rng: np.random.Generator) -> pa.Table:
    start = int((s.end_time() - timedelta(days=s.days)).timestamp())
    merchant = np.repeat(np.arange(s.merchants), s.days)
    day = np.tile(np.arange(s.days), s.merchants)
    n = len(merchant)
    category = CATEGORIES[rng.integers(0, len(CATEGORIES), s.merchants)][merchant]
    volume = rng.lognormal(5.0, 1.0, s.merchants)[merchant]
    count = rng.poisson(volume).astype("int64")
    ticket = np.round(rng.lognormal(3.5, 0.5, s.merchants)[merchant] * rng.normal(1, 0.05, n), 2)
    chargeback = rng.beta(1, 200, n)
    event = start + day * 86400
    ids = np.char.add("m_", np.char.zfill(merchant.astype(str), 5))
    return pa.table(
        {
            "merchant_id": ids,
            "category": category,
            "txn_count_30d": count,
            "avg_ticket_30d": ticket.clip(0.5, None),
            "chargeback_rate_30d": chargeback,
            "event_timestamp": _ts(event),
            "date": _dates(event),
        }
    )


def activity(s: GeneratorSettings) -> np.ndarray:
    """How often each card holder pays (probabilities, users 1..N): skewed (lognormal),
    and user 2 a heavy user with 1% of all transactions, whom the demo follows. The
    history and the live events share it."""
    weights = np.random.default_rng(s.seed + 3).lognormal(0.0, 1.0, s.users)
    if s.users > 2:
        weights[1] = (weights.sum() - weights[1]) * 0.01 / 0.99
    return weights / weights.sum()


def transactions(s: GeneratorSettings, rng: np.random.Generator) -> pa.Table:
    start = int((s.end_time() - timedelta(days=s.days)).timestamp())
    n = s.transactions
    user_id = (rng.choice(s.users, size=n, p=activity(s)) + 1).astype("int64")
    merchant = rng.integers(0, s.merchants, n)
    amount = np.round(rng.lognormal(3.3, 1.0, n), 2).clip(0.5, 20_000)
    event = np.sort(start + rng.integers(0, s.days * 86400, n))
    ids = np.char.add("t_", np.arange(n).astype(str))
    return pa.table(
        {
            "transaction_id": ids,
            "user_id": user_id,
            "merchant_id": np.char.add("m_", np.char.zfill(merchant.astype(str), 5)),
            "amount": amount,
            "currency": np.full(n, "EUR"),
            "event_timestamp": _ts(event),
            "date": _dates(event),
        }
    )


def fraud_labels(
    transactions_path: Path, s: GeneratorSettings, rng: np.random.Generator
) -> pa.Table:
    """Entity rows for training: a sample of transactions with a fraud label.

    Large amounts at night are more often fraud, so a model has something to learn.
    """
    table = ds.dataset(transactions_path, format="parquet", partitioning="hive").to_table(
        columns=["transaction_id", "user_id", "merchant_id", "amount", "event_timestamp"]
    )
    size = min(table.num_rows, max(1, s.transactions // 10))
    sample = table.take(np.sort(rng.choice(table.num_rows, size=size, replace=False)))
    amount = sample.column("amount").to_numpy()
    hour = (sample.column("event_timestamp").cast(pa.int64()).to_numpy() // 3_600_000_000) % 24
    risk = 0.01 + 0.2 * (amount > 500) + 0.1 * ((hour < 5) | (hour > 22))
    is_fraud = rng.random(size) < risk
    return sample.append_column("is_fraud", pa.array(is_fraud))


def write_partitioned(table: pa.Table, target: Path) -> None:
    """Write ``table`` Hive-partitioned by ``date`` and swap it in atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp-{time.monotonic_ns()}")
    ds.write_dataset(
        table,
        staging,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"),
        existing_data_behavior="error",
        max_rows_per_group=256_000,
        # Page checksums: materialization can tell a damaged source file by them.
        file_options=ds.ParquetFileFormat().make_write_options(write_page_checksum=True),
    )
    old = target.with_name(f".{target.name}.old-{time.monotonic_ns()}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def generate(
    config: RepoConfig,
    settings: GeneratorSettings,
    *,
    kafka_events: int = 0,
    progress: Callable[[str], None] = lambda _msg: None,
) -> dict[str, int]:
    """Write every source of the example repo; return rows written per dataset."""
    rng = np.random.default_rng(settings.seed)
    root = config.repo_path / "data" / "sources"
    report: dict[str, int] = {}
    for name, build in (
        ("user_profile", user_profiles),
        ("merchant_stats", merchant_stats),
        ("transactions", transactions),
    ):
        started = time.perf_counter()
        table = build(settings, rng)
        write_partitioned(table, root / name)
        report[name] = table.num_rows
        progress(
            f"wrote {name}: {table.num_rows:,} rows in {time.perf_counter() - started:.1f}s "
            f"-> {root / name}"
        )
    labels = fraud_labels(root / "transactions", settings, rng)
    labels_path = config.repo_path / "data" / "labels.parquet"
    pq.write_table(labels, labels_path, write_page_checksum=True)
    report["labels"] = labels.num_rows
    progress(f"wrote labels: {labels.num_rows:,} labelled transactions -> {labels_path}")
    if kafka_events:
        report["kafka_events"] = produce_events(config, settings, kafka_events, progress=progress)
    return report


def live_events(
    settings: GeneratorSettings,
    count: int,
    *,
    seed: int | None = None,
    amount_scale: float = 1.0,
    spread: timedelta | None = None,
) -> list[dict[str, Any]]:
    """``count`` transaction events, the last one now (a stream's events are never ahead),
    drawn like the history (the same users' activity, lognormal amounts): a millisecond apart (a
    burst), or evenly over the ``spread`` before now (e.g. the history's rate, about
    1,400 an hour at the default size). ``amount_scale`` multiplies the amounts (a shifted
    world, for drift)."""
    rng = np.random.default_rng(settings.seed + 1 if seed is None else seed)
    now = time.time()
    step = spread.total_seconds() / count if spread is not None and count else 0.001
    users = rng.choice(settings.users, size=count, p=activity(settings)) + 1
    events = []
    for i in range(count):
        user = int(users[i])
        events.append(
            {
                "transaction_id": f"live_{int(now)}_{i}",
                "user_id": user,
                "merchant_id": f"m_{int(rng.integers(0, settings.merchants)):05d}",
                "amount": round(float(rng.lognormal(3.3, 1.0)) * amount_scale, 2),
                "currency": "EUR",
                "event_timestamp": datetime.fromtimestamp(
                    now - (count - 1 - i) * step, UTC
                ).isoformat(),
            }
        )
    return events


def produce_events(
    config: RepoConfig,
    settings: GeneratorSettings,
    count: int,
    *,
    topic: str = TOPIC,
    partitions: int = 4,
    bad: float = 0.0,
    amount_scale: float = 1.0,
    events: list[dict[str, Any]] | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> int:
    """Produce ``count`` transaction events (``live_events``, or the given ``events``),
    keyed by user (per-user order); a ``bad`` fraction of them breaks the view's rules
    (dead letters to see)."""
    import orjson

    try:
        from kafka import KafkaProducer
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError
    except ImportError as exc:
        from featurestore.errors import MissingExtraError

        raise MissingExtraError("kafka-python", "kafka") from exc

    servers = config.kafka_bootstrap_servers
    admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    if events is None:
        events = live_events(settings, count, amount_scale=amount_scale)
    rng = np.random.default_rng(settings.seed + 2)
    producer = KafkaProducer(bootstrap_servers=servers, linger_ms=20, acks=1)
    started = time.perf_counter()
    for event in events:
        value = orjson.dumps(event)
        if bad and rng.random() < bad:
            value = (
                orjson.dumps({**event, "amount": -event["amount"]})  # below the expected range
                if rng.random() < 0.5
                else value[: len(value) // 2]  # truncated JSON
            )
        producer.send(topic, key=str(event["user_id"]).encode(), value=value)
    producer.flush()
    producer.close()
    progress(
        f"produced {len(events):,} events to '{topic}' in {time.perf_counter() - started:.1f}s"
    )
    return len(events)
