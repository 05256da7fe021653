"""Data quality: a view's expectations checked on batches (Great Expectations)."""
