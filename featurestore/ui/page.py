"""What a page handler gets and gives back: the request's context in, a template out.

Handlers are plain functions (``PageContext -> Rendered``), run in a worker thread (they
read the registry, which is blocking I/O), and know nothing of HTTP or sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from featurestore.errors import EntityInputError, ObjectNotFound
from featurestore.policy.keys import Credential
from featurestore.registry.snapshot import RegistrySnapshot
from featurestore.ui.render import Renderer
from featurestore.ui.state import UiState

PAGE_SIZE = 50  # rows a list page shows


def text_value(params: Mapping[str, str], name: str) -> str:
    """A free-text query parameter, trimmed and capped ('' when absent)."""
    return str(params.get(name) or "").strip()[:200]


@dataclass(frozen=True)
class PageContext:
    state: UiState
    renderer: Renderer
    operator: Credential
    path: Mapping[str, str]  # the URL's parameters (/views/{name})
    params: Mapping[str, str]  # its query string

    @cached_property
    def snapshot(self) -> RegistrySnapshot:
        """The registry as this request first saw it: one snapshot for the whole page."""
        return self.state.snapshot()

    @property
    def url(self) -> Callable[..., str]:
        return self.renderer.url

    def text_param(self, name: str) -> str:
        return text_value(self.params, name)

    def id_param(self, name: str, what: str) -> int:
        """A record's id from the URL; an id that is not a number names nothing (404)."""
        raw = self.path[name]
        if not raw.isdigit() or len(raw) > 18:
            raise ObjectNotFound(f"There is no {what} #{raw[:40]}: ids are whole numbers.")
        return int(raw)

    def int_param(self, name: str, default: int = 0, *, low: int = 0, high: int = 10**9) -> int:
        """A whole-number query parameter (``?offset=50``), or a clear 422."""
        raw = self.params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise EntityInputError(f"?{name}={raw[:40]!r} is not a whole number.") from None
        if not low <= value <= high:
            raise EntityInputError(f"?{name}={value} is out of range ({low} to {high}).")
        return value


@dataclass(frozen=True)
class Rendered:
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    title: str = ""
    status: int = 200


Handler = Callable[[PageContext], Rendered]
