"""The Parquet offline store and point-in-time joins (DuckDB and Spark engines)."""
