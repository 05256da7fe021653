"""Streaming: window aggregations, per-event checks and offline landing, shared by the
Kafka consumer and the batch job."""
