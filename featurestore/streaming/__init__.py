"""Streaming: the Kafka consumer (``consumer``), looking at and repairing a stream
(``admin``, ``dead_letters``), the Spark batch twin (``spark_batch``), and what they share:
window aggregations, per-event checks and offline landing."""
