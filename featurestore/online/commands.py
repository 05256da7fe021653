"""A lookup's commands: one HMGET per entity row and entity set, keys spelled by the plan.

Errors name the row and the key: a missing join key, a nested value, a value the key's
dtype cannot spell.

This module is on the online read path: standard library only.
"""

from __future__ import annotations

from typing import Any

from featurestore.errors import EntityInputError, MalformedRequestError
from featurestore.online.layout import nested_kind
from featurestore.online.plan import LookupPlan


def build_commands(plan: LookupPlan, rows: list[dict[str, Any]]) -> list[tuple]:
    """One HMGET per entity row and entity set. Raises EntityInputError naming the row."""
    commands = []
    i = 0
    try:
        for i, row in enumerate(rows):  # noqa: B007 -- i names the row in errors
            for kr in plan.key_reads:
                if len(kr.parts) == 1:
                    key = kr.prefix + kr.parts[0](row[kr.join_keys[0]]).encode()
                else:
                    key = (
                        kr.prefix
                        + ",".join(
                            p(row[k]) for p, k in zip(kr.parts, kr.join_keys, strict=True)
                        ).encode()
                    )
                commands.append((b"HMGET", key, *kr.fields))
    except KeyError as exc:
        key = exc.args[0]
        have = ", ".join(map(str, rows[i])) or "none"
        raise EntityInputError(
            f"Entity row {i} has no '{key}', which {', '.join(plan.views_needing(key))} "
            f"need(s) (the row has: {have})."
        ) from None
    except (TypeError, ValueError) as exc:
        name = _bad_key(plan, rows[i])
        kind = nested_kind(rows[i].get(name))
        if kind is not None:
            raise MalformedRequestError(
                f"Entity row {i}: key '{name}' is a {kind}; entity key values are scalars "
                f'(a string or an integer, as the entity\'s dtype says), e.g. {{"{name}": 1}}.'
            ) from None
        raise EntityInputError(f"Entity row {i}: key '{name}': {exc}.") from None
    return commands


def _bad_key(plan: LookupPlan, row: dict[str, Any]) -> str:
    for kr in plan.key_reads:
        for part, key in zip(kr.parts, kr.join_keys, strict=True):
            try:
                part(row[key])
            except (TypeError, ValueError):
                return key
    return "?"
