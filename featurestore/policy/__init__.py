"""Policies: which model may use which feature (compiled decisions, masking)."""
