"""Entity rows of a lookup request: rows or columns in, a bounded list of row dicts out.

This module is on the online read path: standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from featurestore.errors import EntityInputError, RequestTooLargeError

DEFAULT_MAX_ENTITIES = 1000


def entity_rows(entities: Any, max_entities: int) -> list[dict[str, Any]]:
    """Rows as dicts, from a list of dicts or a dict of equal-length columns."""
    # Lists first, and dicts by type: an ABC isinstance costs about 1 us a check.
    if isinstance(entities, list | tuple):
        rows = list(entities)
        if len(rows) > max_entities:
            raise _too_many(len(rows), max_entities)
        for i, row in enumerate(rows):
            if type(row) is not dict and not isinstance(row, Mapping):
                raise EntityInputError(
                    f"Entity row {i} is a {type(row).__name__}; each row is a mapping of join "
                    'keys to values, e.g. {"user_id": 1}.'
                )
    elif isinstance(entities, Mapping):
        columns = list(entities.items())
        lengths = {len(v) if isinstance(v, list | tuple) else -1 for _, v in columns}
        if -1 in lengths:
            raise EntityInputError(
                "Entities given as columns must map each join key to a list of values, e.g. "
                '{"user_id": [1, 2]}.'
            )
        if len(lengths) > 1:
            shown = ", ".join(f"{k}: {len(v)}" for k, v in columns)
            raise EntityInputError(f"Entity key columns differ in length ({shown}).")
        n = lengths.pop() if lengths else 0
        if n > max_entities:
            raise _too_many(n, max_entities)
        keys = [k for k, _ in columns]
        rows = [
            dict(zip(keys, values, strict=True))
            for values in zip(*(v for _, v in columns), strict=True)
        ]
    else:
        raise EntityInputError(
            "entities must be a list of rows ({join key: value}) or a mapping of join keys "
            f"to lists of values, not {type(entities).__name__}."
        )
    if not rows:
        raise EntityInputError("No entity rows given: a lookup needs at least one.")
    return rows


def _too_many(n: int, limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(
        f"{n} entity rows in one lookup; the limit is {limit}. Split the request, or raise "
        "the limit (FeatureStore.online_client(max_entities=...), `serve --max-entities`)."
    )
