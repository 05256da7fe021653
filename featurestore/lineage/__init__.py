"""Lineage: from raw data to view versions to training sets and models."""
