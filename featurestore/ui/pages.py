"""Every page's URL and handler (``app.py`` routes them; each handler lives in the module
of its page). Stable URLs: the CLI and the docs link to them."""

from __future__ import annotations

from typing import Any

from featurestore.ui import pages_catalog, pages_lineage
from featurestore.ui.page import Handler

HTML: list[tuple[str, Handler]] = [
    ("/", pages_catalog.catalog),
    ("/objects/{kind}/{name}", pages_catalog.object_page),
    ("/lineage/model/{name}", pages_lineage.model_page),
    ("/lineage/feature/{ref}", pages_lineage.feature_page),
]
JSON: list[tuple[str, Any]] = [
    ("/api/catalog", pages_catalog.catalog_json),
]
