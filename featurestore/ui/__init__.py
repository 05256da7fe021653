"""The web UI (``featurestore ui``): the registry's catalog, views, models, lineage, runs,
training sets and audit log as pages, read-only, behind an operator's key."""
