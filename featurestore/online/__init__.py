"""The Redis online store: layout, the event-time-monotonic writer, lookups."""
