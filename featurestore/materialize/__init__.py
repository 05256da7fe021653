"""Batch materialization: source Parquet -> validate -> offline and online stores.

``job.materialize`` runs it (``featurestore materialize``); ``engines`` names the engines
(``local`` in-process, ``spark``); ``backfill`` is the Spark-free demo backfill. Nothing
heavy is imported here: each engine's module imports its own libraries.
"""
