"""Checks of ``featurestore.yaml``'s nested sections: ``online_store.cache``,
``serving.limits``, ``push``, and durations such as ``offline_store.keep_training_inputs``
(featurestore/config.py reads the file and the flat settings).

Errors are RepoConfigError naming the setting, with "did you mean" for unknown keys.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from featurestore.errors import RepoConfigError, did_you_mean
from featurestore.serving.limits import Limit, ServingLimits

CONFIG_FILE = "featurestore.yaml"


def check_keys(section: str, given: dict[str, Any], allowed: dict[str, Any]) -> None:
    for key in given:
        if key not in allowed:
            label = f"{section}.{key}" if section else key
            raise RepoConfigError(
                f"{CONFIG_FILE}: unknown setting '{label}'.{did_you_mean(key, allowed)} "
                f"Known settings{' of ' + section if section else ''}: {', '.join(allowed)}."
            )


DEFAULT_CACHE_ENTRIES = 100_000
MAX_STALENESS_MS = 3_600_000  # an hour: a longer bound is a unit mistake more likely than a wish


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """``online_store.cache``: the in-process cache in front of the online store
    (featurestore/online/cache.py). A view is cached when it, or the model that reads it,
    has a ``max_staleness_ms``; where both do, the smaller bound wins."""

    max_entries: int = DEFAULT_CACHE_ENTRIES  # entity keys held (each with its views' values)
    views: dict[str, int] = field(default_factory=dict)  # view name -> max_staleness_ms
    models: dict[str, int] = field(default_factory=dict)  # model name -> max_staleness_ms


_CACHE_KEYS = {"max_entries": None, "views": None, "models": None}


def cache_config(given: Any, path: Path | str = CONFIG_FILE) -> CacheConfig | None:
    """``online_store.cache`` checked (RepoConfigError naming the setting), or None when
    it is absent: the cache is off by default."""
    if given is None:
        return None
    where = "online_store.cache"
    if not isinstance(given, dict):
        raise RepoConfigError(
            f"{path}: {where} must be a mapping, e.g. `cache: {{max_entries: 100000, views: "
            f"{{user_stats: {{max_staleness_ms: 500}}}}}}`, or left out (no cache)."
        )
    check_keys(where, given, _CACHE_KEYS)
    entries = given.get("max_entries", DEFAULT_CACHE_ENTRIES)
    if isinstance(entries, bool) or not isinstance(entries, int) or entries < 1:
        raise RepoConfigError(
            f"{path}: {where}.max_entries must be a positive integer (entity keys held), "
            f"got {entries!r}."
        )
    bounds: dict[str, dict[str, int]] = {}
    for kind in ("views", "models"):
        named = given.get(kind) or {}
        if not isinstance(named, dict):
            raise RepoConfigError(
                f"{path}: {where}.{kind} must map {kind[:-1]} names to settings, e.g. "
                f"`{kind}: {{NAME: {{max_staleness_ms: 500}}}}`."
            )
        bounds[kind] = {}
        for name, setting in named.items():
            label = f"{where}.{kind}.{name}"
            if not isinstance(setting, dict):
                raise RepoConfigError(
                    f"{path}: {label} must be a mapping like `{{max_staleness_ms: 500}}`, "
                    f"got {setting!r}."
                )
            check_keys(label, setting, {"max_staleness_ms": None})
            ms = setting.get("max_staleness_ms")
            if isinstance(ms, bool) or not isinstance(ms, int) or not 1 <= ms <= MAX_STALENESS_MS:
                raise RepoConfigError(
                    f"{path}: {label}.max_staleness_ms must be an integer number of "
                    f"milliseconds from 1 to {MAX_STALENESS_MS:,}, got {ms!r}. Leave the "
                    f"{kind[:-1]} out to not cache it."
                )
            bounds[kind][str(name)] = ms
    return CacheConfig(max_entries=entries, views=bounds["views"], models=bounds["models"])


_LIMITS = {"default": None, "models": None, "project": None}
_LIMIT = {"concurrent": "requests", "rows_per_second": "entity rows", "burst_rows": "entity rows"}


def serving_limits(given: Any, path: Path) -> ServingLimits:
    """``serving.limits``: ``default`` and ``project`` limits, and ``models`` overrides
    merged over ``default`` (a key set to null turns that limit off)."""
    if given is None:
        return ServingLimits()
    where = "serving.limits"
    if not isinstance(given, dict):
        raise RepoConfigError(
            f"{path}: '{where}' must be a mapping of default, models and project, e.g. "
            "`default: {concurrent: 64, rows_per_second: 50000}`."
        )
    check_keys(where, given, _LIMITS)
    default = _limit(f"{where}.default", given.get("default"), Limit(), path)
    models = given.get("models") or {}
    if not isinstance(models, dict):
        raise RepoConfigError(
            f"{path}: '{where}.models' must map model names to limits, e.g. "
            "`fraud_model: {concurrent: 8, rows_per_second: 2000}`."
        )
    return ServingLimits(
        default=default,
        models={
            str(name): _limit(f"{where}.models.{name}", value, default, path)
            for name, value in models.items()
        },
        project=_limit(f"{where}.project", given.get("project"), Limit(), path),
    )


def _limit(where: str, given: Any, base: Limit, path: Path) -> Limit:
    if given is None:
        return base
    if not isinstance(given, dict):
        raise RepoConfigError(
            f"{path}: '{where}' must be a mapping, e.g. `{{concurrent: 8, rows_per_second: 2000}}`."
        )
    check_keys(where, given, _LIMIT)
    values: dict[str, Any] = {}
    if "rows_per_second" in given and "burst_rows" not in given:
        values["burst_rows"] = None  # a rate of its own: a burst of its own (one second's)
    for key, value in given.items():
        values[key] = None if value is None else _limit_value(f"{where}.{key}", value, path)
    limit = replace(base, **values)
    if limit.burst_rows is not None and limit.rows_per_second is None:
        raise RepoConfigError(
            f"{path}: '{where}.burst_rows' needs a rows_per_second to refill it; set one."
        )
    return limit


def _limit_value(where: str, value: Any, path: Path) -> int | float:
    """A positive number (a whole one but for rows_per_second); strings from ${VAR} too."""
    whole = not where.endswith("rows_per_second")
    unit = _LIMIT[where.rsplit(".", 1)[1]]
    number: int | float | None = None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            number = int(value) if whole else float(value)
        except (TypeError, ValueError):
            number = None
        if whole and isinstance(value, float) and value != number:
            number = None
    if number is None or not math.isfinite(number) or number <= 0:
        kind = "a whole number" if whole else "a number"
        raise RepoConfigError(
            f"{path}: '{where}' must be {kind} of {unit} above 0 (got {value!r}, a "
            f"{type(value).__name__}); write null to turn it off."
        )
    return number


@dataclass(frozen=True, slots=True)
class PushConfig:
    """``push``: how pushed rows are taken and batched (featurestore/push/)."""

    max_rows: int = 10_000  # rows in one push; more is refused (413)
    offline_batch_rows: int = 50_000  # buffered offline rows landed as one append at this many
    offline_flush_seconds: float = 5.0  # ... or once the oldest has waited this long
    run_interval_seconds: int = 60  # one push run record per view version and interval


_PUSH_KEYS = {name: None for name in PushConfig.__dataclass_fields__}
_WHOLE = ("max_rows", "offline_batch_rows", "run_interval_seconds")


def push_config(given: Any, path: Path | str = CONFIG_FILE) -> PushConfig:
    """``push`` checked (RepoConfigError naming the setting); defaults where left out."""
    if not given:
        return PushConfig()
    if not isinstance(given, dict):
        raise RepoConfigError(
            f"{path}: 'push' must be a mapping, e.g. `push: {{offline_batch_rows: 50000, "
            "offline_flush_seconds: 5}`."
        )
    check_keys("push", given, _PUSH_KEYS)
    for key, value in given.items():
        whole = key in _WHOLE
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or value <= 0 or not math.isfinite(value) or (whole and value != int(value)):
            kind = "a positive integer" if whole else "a positive number"
            raise RepoConfigError(f"{path}: push.{key} must be {kind}, got {value!r}.")
    values: dict[str, Any] = {k: int(v) if k in _WHOLE else float(v) for k, v in given.items()}
    return replace(PushConfig(), **values)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_duration(text: str) -> float | None:
    """``"365d"``, ``"12h"``, ``"30m"``, ``"0s"``, ``"2w"`` in seconds; None if not one."""
    match = _DURATION.match(text)
    if match is None:
        return None
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def duration_seconds(where: str, given: Any, path: Path | str = CONFIG_FILE) -> float | None:
    """A duration setting in seconds, or None when null (no limit)."""
    if given is None:
        return None
    seconds = parse_duration(given) if isinstance(given, str) else None
    if seconds is None:
        raise RepoConfigError(
            f"{path}: {where} must be a duration such as 365d, 12h, 30m or 2w (s, m, h, d, "
            f"w), or null to keep while the record exists; got {given!r}."
        )
    return seconds
