"""Where rows come from (paths relative to the repo; `featurestore generate-data` writes them)."""

from featurestore import Field, Float64, Int64, KafkaSource, ParquetSource, String, UnixTimestamp

user_profile_source = ParquetSource(
    name="user_profile_source",
    path="data/sources/user_profile",
    timestamp_field="event_timestamp",
    created_timestamp_field="created_timestamp",
    description="Daily snapshots of card holders from the accounts database (Hive-partitioned).",
    owner="accounts@example.com",
)

merchant_stats_source = ParquetSource(
    name="merchant_stats_source",
    path="data/sources/merchant_stats",
    timestamp_field="event_timestamp",
    description="Daily merchant aggregates computed by the payments warehouse.",
    owner="payments-analytics@example.com",
)

transactions_log = ParquetSource(
    name="transactions_log",
    path="data/sources/transactions",
    timestamp_field="event_timestamp",
    description="Historical card transactions: the same events as the Kafka topic.",
    owner="payments-platform@example.com",
)

transactions_stream = KafkaSource(
    name="transactions_stream",
    topic="card_transactions",
    timestamp_field="event_timestamp",
    schema=[
        Field(name="transaction_id", dtype=String),
        Field(name="user_id", dtype=Int64),
        Field(name="merchant_id", dtype=String),
        Field(name="amount", dtype=Float64),
        Field(name="currency", dtype=String),
        Field(name="event_timestamp", dtype=UnixTimestamp),
    ],
    batch_source=transactions_log,
    description="Card authorisations as they happen, one JSON event per transaction.",
    owner="payments-platform@example.com",
)
