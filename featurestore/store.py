"""FeatureStore: a thin facade over the repo, the registry and (later) the stores.

It holds no logic of its own beyond wiring: each verb calls the module that
owns the concept, so the facade stays small as parts are added.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.config import RepoConfig, load_config
from featurestore.errors import EntityInputError, MissingExtraError, did_you_mean
from featurestore.registry import ApplyResult, Registry, RegistrySnapshot, ResolvedFeature
from featurestore.registry.plan import Change, Plan
from featurestore.registry.snapshot import ViewVersion
from featurestore.repo import RepoContents, load_repo

if TYPE_CHECKING:
    from featurestore.offline.join import OfflineEngine
    from featurestore.offline.training import TrainingSet
    from featurestore.offline.writer import OfflineStore


class FeatureStore:
    """Entry point for a feature repo: ``FeatureStore("feature_repo")``."""

    def __init__(
        self,
        repo_path: str | os.PathLike[str] = ".",
        *,
        config: RepoConfig | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.config = config or load_config(repo_path)
        self._registry = registry

    @property
    def project(self) -> str:
        return self.config.project

    @cached_property
    def registry(self) -> Registry:
        return self._registry or Registry(self.config.registry_url)

    def close(self) -> None:
        if self._registry is None and "registry" in self.__dict__:
            self.registry.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- definitions ----------------------------------------------------------

    def load_repo(self) -> RepoContents:
        return load_repo(self.config.repo_path)

    def plan(self) -> Plan:
        return self.registry.plan(self.load_repo())

    def apply(self, *, on_change: Callable[[Change], None] | None = None) -> ApplyResult:
        return self.registry.apply(
            self.load_repo(), on_change=on_change, code_version=git_sha(self.config.repo_path)
        )

    # -- registry reads -------------------------------------------------------

    def snapshot(self) -> RegistrySnapshot:
        return self.registry.snapshot(self.project)

    def versions(self, view: str) -> list[ViewVersion]:
        return self.registry.versions(self.project, view)

    def resolve(self, refs: list[str] | tuple[str, ...]) -> list[ResolvedFeature]:
        """Resolve feature references and feature-service names to view versions."""
        return self.snapshot().resolve_all(refs)

    # -- offline ----------------------------------------------------------------

    def offline_store(self) -> OfflineStore:
        from featurestore.offline.writer import OfflineStore

        return OfflineStore(self.config.offline_store_path, self.project)

    def offline_engine(self, engine: str = "duckdb", **options: Any) -> OfflineEngine:
        """``duckdb`` (default, embedded) or ``spark`` (the repo's spark.master and conf)."""
        if engine == "duckdb":
            from featurestore.offline.duckdb_engine import DuckDBEngine

            return DuckDBEngine(**options)
        if engine == "spark":
            try:
                from featurestore.offline.spark_engine import SparkEngine, session_from_config
            except ImportError as exc:
                raise MissingExtraError("pyspark", "spark") from exc
            return SparkEngine(options.get("session") or session_from_config(self.config))
        raise EntityInputError(
            f"Unknown engine {engine!r}.{did_you_mean(engine, ['duckdb', 'spark'])} "
            "Use 'duckdb' or 'spark'."
        )

    def get_training_data(
        self,
        entities: Any,
        *,
        features: Sequence[str] | None = None,
        feature_service: str | None = None,
        model: str | None = None,
        timestamp_column: str = "event_timestamp",
        full_feature_names: bool = False,
        engine: str | OfflineEngine = "duckdb",
        output_path: str | os.PathLike[str] | None = None,
    ) -> TrainingSet:
        """Point-in-time correct features for each entity row (see ``offline/join.py``).

        ``entities``: a pyarrow Table, pandas DataFrame or Parquet path with the
        join keys and ``timestamp_column`` (UTC; naive times are taken as UTC).
        Ask with exactly one of ``features``, ``feature_service`` or ``model``
        (a model reads its pinned versions). Returns a TrainingSet whose
        ``.table`` is a pyarrow Table, or streams to ``output_path``; either way
        the build is recorded in the registry for lineage.
        """
        from featurestore.offline.training import build_training_set

        runner = self.offline_engine(engine) if isinstance(engine, str) else engine
        return build_training_set(
            registry=self.registry,
            snapshot=self.snapshot(),
            offline_root=self.config.offline_store_path,
            engine=runner,
            entities=entities,
            features=features,
            feature_service=feature_service,
            model=model,
            timestamp_column=timestamp_column,
            full_feature_names=full_feature_names,
            output_path=output_path,
        )

    def retire(self, view: str, version: int) -> ViewVersion:
        return self.registry.retire_version(self.project, view, version)

    def promote(self, model: str) -> dict[str, int]:
        return self.registry.promote(self.project, model)


def git_sha(path: Path) -> str | None:
    """The feature repo's commit, '-dirty' when it has uncommitted changes; None outside git."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha[:12]}-dirty" if dirty else sha[:12]
