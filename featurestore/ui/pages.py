"""Every page's URL and handler (``app.py`` routes them; each handler lives in the module
of its page). Stable URLs: the CLI and the docs link to them."""

from __future__ import annotations

from typing import Any

from featurestore.ui import (
    pages_audit,
    pages_catalog,
    pages_lineage,
    pages_model,
    pages_runs,
    pages_training,
    pages_view,
)
from featurestore.ui.page import Handler

HTML: list[tuple[str, Handler]] = [
    ("/", pages_catalog.catalog),
    ("/objects/{kind}/{name}", pages_catalog.object_page),
    ("/views/{name}", pages_view.view_page),
    ("/models/{name}", pages_model.model_page),
    ("/lineage/model/{name}", pages_lineage.model_page),
    ("/lineage/feature/{ref}", pages_lineage.feature_page),
    ("/runs", pages_runs.runs),
    ("/runs/{id}", pages_runs.run),
    ("/training-sets", pages_training.training_sets),
    ("/training-sets/{id}", pages_training.training_set),
    ("/audit", pages_audit.audit),
]
JSON: list[tuple[str, Any]] = [
    ("/api/catalog", pages_catalog.catalog_json),
]
