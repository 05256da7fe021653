"""Loading a feature repo: import its Python files and check the definitions.

Every problem is collected and reported at once (``RepoLoadError``), each
with the file and line of the definition it is about, so a user fixes a repo
in one pass rather than one error per run.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import os
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurestore.bytecode import refresh_bytecode
from featurestore.config import RepoConfig, load_config
from featurestore.definitions import (
    DEFINITION_TYPES,
    KINDS,
    DriftMonitor,
    Entity,
    FeatureService,
    FeatureView,
    KafkaSource,
    Model,
    OnDemandFeatureView,
    ParquetSource,
    Policy,
    RequestSource,
)
from featurestore.errors import FeatureStoreError, Problem, RepoLoadError, did_you_mean
from featurestore.gcpause import gc_paused
from featurestore.references import parse_reference

_SKIP_DIRS = {"__pycache__", ".git", ".venv", "venv", "data", ".featurestore", "node_modules"}


@dataclass(frozen=True, slots=True)
class RepoContents:
    """Every definition of a repo by kind and name, with references resolved."""

    config: RepoConfig
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of_kind(self, kind: str) -> dict[str, Any]:
        return self.objects.get(kind, {})

    @property
    def entities(self) -> dict[str, Entity]:
        return self.of_kind("entity")

    @property
    def sources(self) -> dict[str, ParquetSource | KafkaSource | RequestSource]:
        return self.of_kind("source")

    @property
    def feature_views(self) -> dict[str, FeatureView | OnDemandFeatureView]:
        """Stored and on-demand views: one namespace, as references see them."""
        return self.of_kind("feature_view")

    @property
    def stored_views(self) -> dict[str, FeatureView]:
        """The views with data of their own (materialized or streamed)."""
        return {n: v for n, v in self.feature_views.items() if isinstance(v, FeatureView)}

    @property
    def on_demand_views(self) -> dict[str, OnDemandFeatureView]:
        return {n: v for n, v in self.feature_views.items() if isinstance(v, OnDemandFeatureView)}

    @property
    def feature_services(self) -> dict[str, FeatureService]:
        return self.of_kind("feature_service")

    @property
    def models(self) -> dict[str, Model]:
        return self.of_kind("model")

    @property
    def policies(self) -> dict[str, Policy]:
        return self.of_kind("policy")

    def __iter__(self) -> Iterator[tuple[str, str, Any]]:
        for kind in KINDS:
            for name, obj in sorted(self.of_kind(kind).items()):
                yield kind, name, obj


def repo_files(config: RepoConfig) -> list[Path]:
    """The repo's definition files: every ``*.py`` not ignored, in a stable order."""
    root = config.repo_path
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if any(fnmatch.fnmatch(rel, pattern) for pattern in config.ignore):
                continue
            files.append(path)
    return files


class _Collector:
    def __init__(self, config: RepoConfig) -> None:
        self.config = config
        self.problems: list[Problem] = []
        self.objects: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}

    # -- reporting ------------------------------------------------------------

    def where(self, obj: Any) -> tuple[str | None, int | None]:
        loc = getattr(obj, "location", None)
        if loc is None:
            return None, None
        return self.relative(loc.file), loc.line

    def relative(self, file: str) -> str:
        try:
            return Path(file).resolve().relative_to(self.config.repo_path).as_posix()
        except ValueError:
            return file

    def problem(self, obj: Any, message: str) -> None:
        file, line = self.where(obj)
        self.problems.append(Problem(message, file, line))

    # -- collecting -----------------------------------------------------------

    def add(self, obj: Any) -> None:
        kind = obj.kind
        existing = self.objects[kind].get(obj.name)
        if existing is None:
            self.objects[kind][obj.name] = obj
            self.add_nested(obj)
            return
        if existing is obj or (
            existing.location is not None and existing.location == obj.location and existing == obj
        ):
            return  # the same definition reached through two imports
        file, line = self.where(existing)
        label = type(obj).__name__
        self.problem(
            obj,
            f"Duplicate {label} name '{obj.name}' (also defined at {file}:{line}). "
            "Names must be unique per kind within a project; rename one of them.",
        )

    def add_nested(self, obj: Any) -> None:
        if isinstance(obj, FeatureView):
            for entity in obj.entities:
                if isinstance(entity, Entity):
                    self.add(entity)
            if not isinstance(obj.source, str):
                self.add(obj.source)
        elif isinstance(obj, OnDemandFeatureView):
            for source in obj.sources:
                if isinstance(source, FeatureView | RequestSource):
                    self.add(source)
        elif isinstance(obj, KafkaSource) and obj.batch_source is not None:
            self.add(obj.batch_source)
        elif isinstance(obj, Model):
            for service in obj.feature_services:
                if isinstance(service, FeatureService):
                    self.add(service)
        elif isinstance(obj, DriftMonitor) and isinstance(obj.model, Model):
            self.add(obj.model)

    def import_file(self, path: Path) -> None:
        rel = path.relative_to(self.config.repo_path)
        module_name = _module_name(self.config.repo_path, path)
        try:
            module = importlib.import_module(module_name)
        except SyntaxError as exc:
            file = self.relative(exc.filename) if exc.filename else rel.as_posix()
            self.problems.append(Problem(f"syntax error: {exc.msg}", file, exc.lineno))
            return
        except Exception as exc:
            self.problems.append(self.user_code_problem(exc, rel.as_posix()))
            return
        for value in list(vars(module).values()):
            if isinstance(value, DEFINITION_TYPES):
                self.add(value)

    def user_code_problem(self, exc: BaseException, fallback_file: str) -> Problem:
        """Locate an exception at the deepest frame inside the repo: the user's line."""
        file, line = fallback_file, None
        root = str(self.config.repo_path) + os.sep
        for frame in traceback.extract_tb(exc.__traceback__):
            if os.path.abspath(frame.filename).startswith(root):
                file, line = self.relative(frame.filename), frame.lineno
        label = "" if isinstance(exc, FeatureStoreError) else f"{type(exc).__name__}: "
        return Problem(f"{label}{exc}", file, line)


def _check_views(c: _Collector) -> None:
    entities, sources = c.objects["entity"], c.objects["source"]
    for name, view in list(c.objects["feature_view"].items()):
        if isinstance(view, OnDemandFeatureView):
            continue  # after the stored views: its version binds theirs
        resolved_entities: list[Entity] = []
        for entity in view.entities:
            entity_name = entity if isinstance(entity, str) else entity.name
            if entity_name not in entities:
                c.problem(
                    view,
                    f"FeatureView '{name}' refers to unknown entity '{entity_name}'."
                    f"{did_you_mean(entity_name, entities)}",
                )
            else:
                resolved_entities.append(entities[entity_name])
        source = sources.get(view.source_name)
        if source is None:
            c.problem(
                view,
                f"FeatureView '{name}' refers to unknown source '{view.source_name}'."
                f"{did_you_mean(view.source_name, sources)}",
            )
        elif isinstance(source, RequestSource):
            c.problem(
                view,
                f"FeatureView '{name}' reads RequestSource '{source.name}', which has no "
                "stored rows: request fields feed OnDemandFeatureViews only.",
            )
            continue
        if source is None or len(resolved_entities) != len(view.entities):
            continue
        resolved = dataclasses.replace(view, entities=resolved_entities, source=source)
        c.objects["feature_view"][name] = resolved
        _check_view_columns(c, resolved)
    for view in list(c.objects["feature_view"].values()):
        if isinstance(view, OnDemandFeatureView):
            _check_on_demand(c, view)


def _check_on_demand(c: _Collector, view: OnDemandFeatureView) -> None:
    """Resolve an on-demand view's inputs (stored views of this repo) and bind their
    versions; every problem is reported against the on-demand view."""
    views = c.objects["feature_view"]
    sources = c.objects["source"]
    owner = f"OnDemandFeatureView '{view.name}'"
    ok = True
    for vi in view.inputs:
        target = views.get(vi.view)
        if target is None:
            c.problem(
                view,
                f"{owner} reads unknown feature view '{vi.view}'.{did_you_mean(vi.view, views)}",
            )
            ok = False
        elif isinstance(target, OnDemandFeatureView):
            c.problem(
                view,
                f"{owner} reads on-demand view '{vi.view}'; inputs must be stored views "
                "(compute both in one function instead).",
            )
            ok = False
        elif not isinstance(target.source, ParquetSource | KafkaSource):
            ok = False  # the view's own problem is reported
        else:
            for feature in vi.features:
                if target.field(feature) is None:
                    c.problem(
                        view,
                        f"{owner} reads '{vi.view}:{feature}', which that view does not have."
                        f"{did_you_mean(feature, target.feature_names)}",
                    )
                    ok = False
    for request in view.requests:
        known = sources.get(request.name)
        if known is not None and known is not request and known != request:
            c.problem(
                view,
                f"{owner}: source name '{request.name}' is used by another source; rename one.",
            )
            ok = False
    if ok:
        c.objects["feature_view"][view.name] = view.resolve(views)


def _check_view_columns(c: _Collector, view: FeatureView) -> None:
    columns = {f.name: f.dtype for f in view.schema}
    join_keys = {e.join_key: e for e in view.resolved_entities()}
    if isinstance(view.source, KafkaSource):
        source_columns = {f.name: f.dtype for f in view.source.schema}
        for key, entity in join_keys.items():
            if key not in source_columns:
                c.problem(
                    view,
                    f"FeatureView '{view.name}': join key '{key}' of entity '{entity.name}' is "
                    f"not in the schema of KafkaSource '{view.source.name}'."
                    f"{did_you_mean(key, source_columns)}",
                )
            elif source_columns[key] != entity.dtype:
                c.problem(
                    view,
                    f"FeatureView '{view.name}': join key '{key}' is {source_columns[key]} in "
                    f"KafkaSource '{view.source.name}' but entity '{entity.name}' declares "
                    f"{entity.dtype}. Make them agree.",
                )
        for agg in view.aggregations:
            if agg.column is not None and agg.column not in source_columns:
                c.problem(
                    view,
                    f"FeatureView '{view.name}': aggregation '{agg.name}' reads column "
                    f"'{agg.column}', which KafkaSource '{view.source.name}' does not have."
                    f"{did_you_mean(agg.column, source_columns)}",
                )
        columns = {**source_columns, **columns}
    for expectation in view.expectations:
        if expectation.column not in columns and expectation.column not in join_keys:
            c.problem(
                view,
                f"FeatureView '{view.name}': expectation on unknown column "
                f"'{expectation.column}'.{did_you_mean(expectation.column, columns)}",
            )


def _check_services(c: _Collector) -> None:
    views = c.objects["feature_view"]
    for name, service in c.objects["feature_service"].items():
        for text, ref in zip(service.references, service.refs, strict=True):
            view = views.get(ref.view)
            if view is None:
                c.problem(
                    service,
                    f"FeatureService '{name}' refers to '{text}', but there is no feature view "
                    f"'{ref.view}'.{did_you_mean(ref.view, views)}",
                )
            elif view.field(ref.feature) is None:
                c.problem(
                    service,
                    f"FeatureService '{name}' refers to '{text}', but view '{ref.view}' has no "
                    f"feature '{ref.feature}'.{did_you_mean(ref.feature, view.feature_names)}",
                )


def _check_models_and_monitors(c: _Collector) -> None:
    services, models = c.objects["feature_service"], c.objects["model"]
    for name, model in models.items():
        for service in model.service_names:
            if service not in services:
                c.problem(
                    model,
                    f"Model '{name}' consumes unknown feature service '{service}'."
                    f"{did_you_mean(service, services)}",
                )
    for name, monitor in c.objects["drift_monitor"].items():
        model = models.get(monitor.model_name)
        if model is None:
            c.problem(
                monitor,
                f"DriftMonitor '{name}' watches unknown model '{monitor.model_name}'."
                f"{did_you_mean(monitor.model_name, models)}",
            )
            continue
        consumed = {
            f"{r.view}:{r.feature}"
            for s in model.service_names
            if s in services
            for r in services[s].refs
        }
        for text in monitor.features:
            ref = parse_reference(text)
            if f"{ref.view}:{ref.feature}" not in consumed:
                c.problem(
                    monitor,
                    f"DriftMonitor '{name}' watches '{text}', which model '{model.name}' does "
                    f"not consume.{did_you_mean(f'{ref.view}:{ref.feature}', consumed)} "
                    f"The model reads the services {', '.join(model.service_names)}; watch one "
                    "of their features or add it to a service.",
                )


def _check_policies(c: _Collector) -> None:
    views, models = c.objects["feature_view"], c.objects["model"]
    for name, policy in c.objects["policy"].items():
        for view in policy.features.views:
            if view not in views:
                c.problem(
                    policy,
                    f"Policy '{name}' names unknown feature view '{view}'."
                    f"{did_you_mean(view, views)}",
                )
        for model in policy.models.names:
            if model not in models:
                c.problem(
                    policy,
                    f"Policy '{name}' names unknown model '{model}'.{did_you_mean(model, models)}",
                )


def load_repo(repo_path: str | os.PathLike[str]) -> RepoContents:
    """Import the repo's files and return its definitions, or raise RepoLoadError with all problems.

    Repo files may import each other by module name (``from entities import
    user``), as in Feast: the repo folder is put first on ``sys.path`` while
    loading. Modules from a previous load are dropped first, so a long-running
    process sees edits.
    """
    with gc_paused():
        return _load(repo_path)


def _load(repo_path: str | os.PathLike[str]) -> RepoContents:
    config = load_config(repo_path)
    collector = _Collector(config)
    root = str(config.repo_path)
    files = repo_files(config)
    # Repo modules have plain names ("models", "entities") that another repo
    # or package may also use: drop any module of that name first, and our
    # own when done, so each load is hermetic and sees the files as they are.
    names = {_module_name(config.repo_path, path) for path in files}
    _forget_modules(root, names)
    sys.path.insert(0, root)
    # Imports must not write mtime-checked caches (an edit within the second of a load
    # would then run stale code); the repo's own files get content-checked ones.
    saved_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    importlib.invalidate_caches()
    try:
        for path in files:
            refresh_bytecode(path)
        for path in files:
            collector.import_file(path)
    finally:
        sys.dont_write_bytecode = saved_bytecode
        sys.path.remove(root)
        _forget_modules(root, names)
    _check_views(collector)
    _check_services(collector)
    _check_models_and_monitors(collector)
    _check_policies(collector)
    if collector.problems:
        # A file that fails is imported again by each file importing it: say it once.
        raise RepoLoadError(dict.fromkeys(collector.problems))
    return RepoContents(config, collector.objects)


def _module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _forget_modules(root: str, names: set[str]) -> None:
    prefix = root + os.sep
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if name in names or (file and os.path.abspath(file).startswith(prefix)):
            del sys.modules[name]
