"""Per-user rolling transaction counts and sums, fed by the Kafka topic (streaming)."""

from datetime import timedelta

from entities import user
from sources import transactions_stream

from featurestore import Aggregation, FeatureView, expect_between, expect_not_null

user_txn_stats = FeatureView(
    name="user_txn_stats",
    entities=[user],
    source=transactions_stream,
    aggregations=[
        Aggregation(function="count", window=timedelta(minutes=10)),
        Aggregation(function="count", window=timedelta(hours=1)),
        Aggregation(function="count", window=timedelta(days=1)),
        Aggregation(function="sum", column="amount", window=timedelta(minutes=10)),
        Aggregation(function="sum", column="amount", window=timedelta(hours=1)),
        Aggregation(function="sum", column="amount", window=timedelta(days=1)),
        Aggregation(function="max", column="amount", window=timedelta(days=1)),
    ],
    ttl=timedelta(days=1),
    expectations=[
        expect_not_null("user_id"),
        expect_not_null("amount"),
        expect_between("amount", 0, 50_000),
    ],
    owner="risk-data@example.com",
    description="Velocity features: how much and how often a card holder spent recently.",
    tags={"team": "risk", "freshness": "seconds"},
)
