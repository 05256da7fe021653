"""Drift: reference profiles from training sets, sampled serving logs, monitors, statuses."""
