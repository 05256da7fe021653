"""Materialization engines by name, as the offline engines are: ``local`` (in-process,
pyarrow), ``spark``, and ``auto``, which picks one per view version. Each engine's module
is imported only when chosen, so the local engine runs without the spark extra."""

from __future__ import annotations

import importlib
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featurestore.errors import (
    MaterializationError,
    MissingExtraError,
    SourceNotFoundError,
    did_you_mean,
)
from featurestore.materialize.sources import source_files

if TYPE_CHECKING:
    from featurestore.config import RepoConfig
    from featurestore.definitions import FeatureView
    from featurestore.materialize.engine import MaterializeEngine

# name -> (module, class, the extra its imports need)
ENGINES: dict[str, tuple[str, str, str]] = {
    "local": ("featurestore.materialize.local", "LocalEngine", "offline"),
    "spark": ("featurestore.materialize.spark", "SparkEngine", "spark"),
}
NAMES = ("auto", "spark", "local")
# Below this much source data in the window, a local-mode run skips Spark: its start-up and
# cold first jobs cost more than the work (measured: 1M rows, 23 s with Spark, ~6 s without).
LOCAL_ENGINE_MAX_BYTES = 256 * 1024 * 1024


def check_name(name: str) -> None:
    if name not in NAMES:
        raise MaterializationError(
            f"Unknown engine {name!r}.{did_you_mean(name, NAMES)} Use one of {', '.join(NAMES)}."
        )


def load(name: str, config: RepoConfig, **options: Any) -> MaterializeEngine:
    """The engine called ``name`` (not ``auto``: see ``choose``); ``options`` go to its
    constructor (the Spark engine takes ``session``)."""
    check_name(name)
    if name == "auto":
        raise MaterializationError("'auto' chooses per view: call choose() first.")
    module_name, class_name, extra = ENGINES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = (exc.name or module_name).split(".")[0]
        raise MissingExtraError(missing, extra) from exc
    return getattr(module, class_name)(config, **options)


def choose(
    name: str, config: RepoConfig, view: FeatureView, start: datetime | None, end: datetime
) -> str:
    """``name``, or for ``auto``: ``local`` when Spark's master is local and the window's
    source files are under LOCAL_ENGINE_MAX_BYTES, else ``spark``."""
    if name != "auto":
        return name
    if not config.spark_master.startswith("local"):
        return "spark"
    try:
        files = source_files(view, config.repo_path, start, end, view.name)
    except SourceNotFoundError:
        return "local"  # either engine reports it; this one without starting a JVM
    return "spark" if sum(os.path.getsize(f) for f in files) > LOCAL_ENGINE_MAX_BYTES else "local"
