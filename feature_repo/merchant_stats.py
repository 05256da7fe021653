"""Merchant statistics (batch, daily)."""

from datetime import timedelta

from entities import merchant
from sources import merchant_stats_source

from featurestore import FeatureView, Field, Float64, Int64, String, expect_between, expect_not_null

merchant_stats = FeatureView(
    name="merchant_stats",
    entities=[merchant],
    source=merchant_stats_source,
    schema=[
        Field(name="category", dtype=String),
        Field(name="txn_count_30d", dtype=Int64),
        Field(name="avg_ticket_30d", dtype=Float64),
        Field(name="chargeback_rate_30d", dtype=Float64),
    ],
    ttl=timedelta(days=7),
    expectations=[
        expect_not_null("merchant_id"),
        expect_between("chargeback_rate_30d", 0, 1),
        expect_between("txn_count_30d", 0),
    ],
    owner="payments-analytics@example.com",
    description="How a merchant's payments behaved over the last 30 days.",
    tags={"team": "payments"},
)
