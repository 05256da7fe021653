"""Pages from the package's Jinja templates, autoescaped: every name, tag, description and
error that reaches a page is text, whatever characters the registry holds."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import orjson

from featurestore.urls import redact

STATIC = ("ui.css", "ui.js")


@cache
def static_file(name: str) -> bytes:
    return (resources.files("featurestore.ui") / "static" / name).read_bytes()


@cache
def static_version(name: str) -> str:
    """A content hash for the asset's URL, so a new release is never served stale."""
    return hashlib.sha256(static_file(name)).hexdigest()[:12]


def when(value: Any) -> str:
    """A time as ``2026-12-02 10:31:05Z`` (UTC), '' for none."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


def spec_json(value: Any) -> str:
    """A spec as indented JSON, any password in a URL in it replaced (``urls.redact``)."""
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str)
    return redact(text.decode())


def number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _quoted(value: Any) -> str:
    return quote(str(value), safe="")


class Renderer:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("featurestore.ui", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,  # a missing value is a bug, not a blank
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            when=when, number=number, spec_json=spec_json, redact=redact, q=_quoted
        )
        self.env.globals.update(url=self.url, static=self.static, query=self.query)

    def url(self, *parts: Any, **params: Any) -> str:
        """``/ui/views/<name>?v=2``: each part quoted, empty params left out."""
        path = "/".join(quote(str(p), safe=":@") for p in parts)
        kept = {k: v for k, v in params.items() if v not in (None, "")}
        return f"{self.prefix}/{path}" + (f"?{urlencode(kept)}" if kept else "")

    def query(self, base: dict[str, Any], **changes: Any) -> str:
        """``base`` with ``changes``, as a query string (for filters and pages)."""
        merged = {k: v for k, v in {**base, **changes}.items() if v not in (None, "")}
        return "?" + urlencode(merged) if merged else "?"

    def static(self, name: str) -> str:
        return f"{self.prefix}/static/{name}?v={static_version(name)}"

    def page(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)
