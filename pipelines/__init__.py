"""Runnable jobs: data generation, Spark batch jobs and Kafka streaming consumers."""
