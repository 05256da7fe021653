"""Feast's ``POST /push`` on ``featurestore serve``: its request checked and turned into
featurestore pushes.

Feast pushes to a push source, and every feature view fed by that source receives the
rows; featurestore pushes to a view by name. ``push_views`` maps one to the other through
the registry: the views tagged ``feast_push_source: NAME`` (``import-feast`` tags each
view that read a Feast push source, under the push source's own name), the view named
like the push source, and the views whose source has that name. Feast's ``df`` (columns of equal
length) becomes rows; the source's timestamp column is sent as ``event_timestamp``, the
name featurestore's push takes.

The writing itself is a ``PushTarget`` (featurestore's push API: validation, the
monotonic online writer, the offline buffer, push-only keys), passed in by the server.
This module is on the online read path: nothing heavy imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from featurestore.errors import EntityInputError, NotFoundError, did_you_mean
from featurestore.registry.snapshot import RegistrySnapshot
from featurestore.serving.request_io import check_fields

__all__ = [
    "PUSH_KEYS",
    "PUSH_MODES",
    "PushRequest",
    "PushSourceNotFound",
    "PushTarget",
    "parse_push",
    "push_rows",
    "push_views",
    "wrong_type",
]

PUSH_KEYS = ("push_source_name", "df", "to", "allow_registry_cache", "transform_on_write")
PUSH_MODES = ("online", "offline", "online_and_offline")
EVENT_TS = "event_timestamp"
PUSH_TAG = "feast_push_source"  # import-feast tags a view with the push source it read


class PushTarget(Protocol):
    """featurestore's push API (``FeatureStore.push`` behind push keys), as the Feast route
    needs it. Both methods raise the push API's typed errors."""

    def authenticate(self, api_key: str) -> None:
        """Refuse (AuthenticationError, AccessDeniedError) a key that is not a live push
        key of this project: called before the body is read or any name resolved."""
        ...

    def push(
        self, batches: Sequence[tuple[str, list[dict[str, Any]]]], *, to: str, api_key: str
    ) -> bool:
        """Write each (view, rows) batch, all or nothing: every batch is validated (and the
        key's right to write each view checked) before any is written. Returns True when
        everything is written, False when offline rows were queued to land later (the
        route answers 202, as Feast does for a batched offline push). Blocking: the route
        calls it in a worker thread."""
        ...


class PushSourceNotFound(NotFoundError):
    """No view is fed by the push source a Feast push names (Feast answers 422)."""

    http_status = 422


@dataclass(frozen=True, slots=True)
class PushRequest:
    push_source_name: str
    columns: dict[str, list[Any]]
    to: str


def parse_push(payload: Any) -> PushRequest:
    """Feast's push request, checked: known fields of the right types, ``df`` a mapping
    of column names to lists of one length, ``to`` one of Feast's three modes."""
    if not isinstance(payload, dict):
        raise EntityInputError("The request body must be a JSON object (Feast's push request).")
    check_fields(payload, PUSH_KEYS, "push request")
    name = payload.get("push_source_name")
    if not isinstance(name, str) or not name:
        raise wrong_type('"push_source_name"', name, "a string (a push source or view name)")
    to = payload.get("to", "online")
    if to not in PUSH_MODES:
        shown = to if isinstance(to, str) else type(to).__name__
        raise EntityInputError(
            f'"to" is {shown!r}; it must be one of {", ".join(PUSH_MODES)}.'
            f"{did_you_mean(to, PUSH_MODES) if isinstance(to, str) else ''}"
        )
    for flag in ("allow_registry_cache", "transform_on_write"):
        if not isinstance(payload.get(flag, True), bool):
            raise EntityInputError(f'"{flag}" must be true or false.')
    if "df" not in payload:
        raise EntityInputError('The push request has no "df" (columns: {name: [values]}).')
    df = payload["df"]
    if not isinstance(df, dict):
        raise wrong_type('"df"', df, 'an object of columns, e.g. {"user_id": [1], ...}')
    lengths = set()
    for column, values in df.items():
        if not isinstance(values, list):
            raise wrong_type(f'"df" column {column!r}', values, "a list of values")
        lengths.add(len(values))
    if len(lengths) > 1:
        shown = ", ".join(f"{c}: {len(v)}" for c, v in df.items())
        raise EntityInputError(f'"df" columns differ in length ({shown}).')
    if not df or lengths == {0}:
        raise EntityInputError('"df" has no rows: a push needs at least one.')
    return PushRequest(name, df, to)


def push_views(snapshot: RegistrySnapshot, push_source_name: str) -> list[str]:
    """The active views a Feast push to ``push_source_name`` writes, sorted by name."""
    views = snapshot.active("feature_view")
    fed = sorted(
        name
        for name, head in views.items()
        if push_source_name
        in (name, head.spec.get("source"), head.spec.get("tags", {}).get(PUSH_TAG))
    )
    if not fed:
        sources = sorted(snapshot.active("source"))
        raise PushSourceNotFound(
            f"No feature view in project '{snapshot.project}' is fed by push source "
            f"'{push_source_name}': name a view, the source a view reads, or a view's "
            f"'{PUSH_TAG}' tag."
            f"{did_you_mean(push_source_name, [*views, *sources])}"
        )
    return fed


def push_rows(
    snapshot: RegistrySnapshot, view: str, columns: Mapping[str, list[Any]]
) -> list[dict[str, Any]]:
    """``columns`` as rows for ``view``, its source's timestamp column sent as
    ``event_timestamp`` (unless that column is there already)."""
    source = snapshot.active("source").get(snapshot.active("feature_view")[view].spec["source"])
    ts = source.spec.get("timestamp_field", EVENT_TS) if source is not None else EVENT_TS
    names = [
        EVENT_TS if c == ts and ts != EVENT_TS and EVENT_TS not in columns else c for c in columns
    ]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def wrong_type(field: str, value: Any, wanted: str) -> EntityInputError:
    """A request field of the wrong type: 422, as Feast's (pydantic's) validation answers."""
    got = {type(None): "null", dict: "an object", list: "a list", str: "a string"}.get(
        type(value), type(value).__name__
    )
    return EntityInputError(f"{field} must be {wanted}, not {got}.")
