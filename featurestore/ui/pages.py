"""Every page's URL and handler (``app.py`` routes them; each handler lives in the module
of its page). Stable URLs: the CLI and the docs link to them."""

from __future__ import annotations

from typing import Any

from featurestore.ui import pages_catalog, pages_model, pages_view
from featurestore.ui.page import Handler

HTML: list[tuple[str, Handler]] = [
    ("/", pages_catalog.catalog),
    ("/objects/{kind}/{name}", pages_catalog.object_page),
    ("/views/{name}", pages_view.view_page),
    ("/models/{name}", pages_model.model_page),
]
JSON: list[tuple[str, Any]] = [
    ("/api/catalog", pages_catalog.catalog_json),
]
