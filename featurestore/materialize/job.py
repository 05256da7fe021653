"""The materialization job, whatever the engine: which views, which window, one run at a
time per view version, and the run record (lineage) of each.

For each view version, in order: its window (``start``/``end``, or from its watermark
with ``incremental``), its engine (``engines.py``), then under the view version's lock:
abandoned runs marked failed and their staged files removed, the run started in the
registry, the engine's data path (``engine.py``), and the run finished, succeeded or
failed with the error's first line. See ``spark.py`` for the stages an engine runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.code_version import git_sha
from featurestore.definitions import FeatureView, ParquetSource
from featurestore.errors import MaterializationError, TransformationError, ValidationFailedError
from featurestore.materialize import engines
from featurestore.materialize.engine import (
    JobContext,
    MaterializeEngine,
    Progress,
    Transformation,
    ViewTask,
)
from featurestore.registry.runs import FAILED, SUCCEEDED, RunRecord
from featurestore.stages import StageHook, no_stage
from featurestore.times import as_utc

if TYPE_CHECKING:
    from featurestore.registry import RegistrySnapshot
    from featurestore.store import FeatureStore


@dataclass
class ViewRun:
    """What happened to one view version, for the CLI and the tests."""

    record: RunRecord
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None

    @property
    def label(self) -> str:
        return self.record.label


def materialize(
    store: FeatureStore,
    views: list[str] | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    incremental: bool = False,
    session: Any = None,
    engine: str = "auto",
    progress: Progress = lambda _m: None,
    on_stage: StageHook = no_stage,
) -> list[ViewRun]:
    """Materialize the latest version of each named view (default: every batch view).

    ``start``/``end`` bound the window [start, end) (default: from the beginning to now);
    ``incremental`` starts each view version at the end of its last successful run.
    ``engine``: ``spark``, ``local`` (in-process) or ``auto``: in-process when Spark's
    master is local and the window's source files are under
    ``engines.LOCAL_ENGINE_MAX_BYTES``, else Spark. A given ``session`` (a SparkSession)
    means Spark. ``on_stage`` is called at each stage's end (tests stop a process there).
    Raises the first failure (after recording it); views before it stay committed.
    """
    engines.check_name(engine)
    end = as_utc(end) or datetime.now(UTC)
    start = as_utc(start)
    if start is not None and start >= end:
        raise MaterializationError(
            f"The window is empty: start {start.isoformat()} is not before end {end.isoformat()}."
        )
    snapshot = store.snapshot()
    code = store.load_repo().stored_views  # transformations run from the repo's code
    ctx = JobContext(
        project=store.project,
        config=store.config,
        registry=store.registry,
        offline=store.offline_store(),
        online=store.online_writer(),
        on_stage=on_stage,
    )
    return run_views(
        ctx,
        snapshot,
        code,
        views,
        start=start,
        end=end,
        incremental=incremental,
        engine="spark" if session is not None else engine,
        session=session,
        progress=progress,
    )


def run_views(
    ctx: JobContext,
    snapshot: RegistrySnapshot,
    code: Mapping[str, FeatureView],
    views: list[str] | None,
    *,
    start: datetime | None,
    end: datetime,
    incremental: bool,
    engine: str,
    session: Any = None,
    progress: Progress = lambda _m: None,
) -> list[ViewRun]:
    """The job on registered views; ``code``: the repo's views, by name (their
    transformations are checked identical to the registered ones)."""
    batch_views = sorted(
        name
        for name, head in snapshot.active("feature_view").items()
        if head.spec.get("source") in snapshot.active("source")
        and isinstance(snapshot.source(head.spec["source"]), ParquetSource)
    )
    names = views or batch_views
    for name in names:
        if name not in batch_views:
            snapshot.view_head(name)  # unknown view: raises with did-you-mean
            snapshot.feature_view(name)  # an on-demand view: raises saying so
            raise MaterializationError(
                f"Feature view '{name}' is not fed by a ParquetSource; streaming views are "
                f"materialized by `featurestore stream`. Batch views: {', '.join(batch_views)}."
            )
    if any(snapshot.feature_view(n).expectations for n in names):
        # Great Expectations takes ~3 s to import: overlap it with Spark's start and read.
        threading.Thread(target=_import_quietly, args=("great_expectations",), daemon=True).start()
    loaded: dict[str, MaterializeEngine] = {}  # one of each per job (one Spark session)
    if session is not None:
        loaded["spark"] = engines.load("spark", ctx.config, session=session)
    runs = []
    for name in names:
        version = snapshot.latest_version(name)
        view = snapshot.feature_view(name, version)
        window_start = (
            ctx.registry.runs.watermark(ctx.project, name, version) if incremental else start
        )
        if window_start is not None and window_start >= end:
            progress(f"{name}@v{version}: up to date (watermark {window_start.isoformat()})")
            continue
        chosen = engines.choose(engine, ctx.config, view, window_start, end)
        if chosen not in loaded:
            loaded[chosen] = engines.load(chosen, ctx.config)
        runs.append(
            materialize_view(
                ctx,
                view,
                version,
                loaded[chosen],
                start=window_start,
                end=end,
                transformation=_transformation(view, code.get(name)),
                progress=progress,
            )
        )
    return runs


def materialize_view(
    ctx: JobContext,
    view: FeatureView,
    version: int,
    engine: MaterializeEngine,
    *,
    start: datetime | None,
    end: datetime,
    transformation: Transformation | None = None,
    progress: Progress = lambda _m: None,
) -> ViewRun:
    label = f"{view.name}@v{version}"
    assert isinstance(view.source, ParquetSource)
    record = RunRecord(
        project=ctx.project,
        view=view.name,
        version=version,
        window_start=start,
        window_end=end,
        code_version=git_sha(ctx.config.repo_path),
        engine=engine.describe(),
    )
    run = ViewRun(record)
    registry = ctx.registry
    table = ctx.offline.table(view.name, version)
    with _run_lock(table.root) as staging_root:
        for stale in registry.runs.records(ctx.project, view.name, limit=20):
            if stale.version == version and stale.status == "running":
                registry.runs.finish(
                    stale, FAILED, "abandoned: its process stopped before the run finished"
                )
        shutil.rmtree(staging_root, ignore_errors=True)  # staged files of dead runs
        registry.runs.start(record)
        staging = staging_root / f"run-{record.id}-{uuid.uuid4().hex[:8]}"
        task = ViewTask(
            view=view,
            version=version,
            record=record,
            staging=staging,
            transformation=transformation,
            created_at=datetime.now(UTC),
            progress=progress,
            seconds=run.seconds,
        )
        try:
            engine.run(ctx, task)
        except BaseException as exc:
            registry.runs.finish(record, FAILED, _message(exc))
            shutil.rmtree(staging, ignore_errors=True)
            raise
        registry.runs.finish(record, SUCCEEDED)
    total = sum(run.seconds.values())
    progress(
        f"{label}: done in {total:.1f}s: {record.rows_read:,} rows read, "
        f"{record.rows_offline:,} offline, {record.rows_online:,} entities online (run {record.id})"
    )
    return run


def _import_quietly(module: str) -> None:
    with contextlib.suppress(ImportError):  # validation reports a missing extra itself
        importlib.import_module(module)


def _transformation(view: FeatureView, code: FeatureView | None) -> Transformation | None:
    """The repo's callable for the view's registered transformation (checked identical)."""
    if view.transformation is None:
        return None
    fn = getattr(code, "transformation", None)
    if fn is None or not callable(fn):
        raise TransformationError(
            f"Feature view '{view.name}' has a transformation, but the loaded repo has no "
            "callable for it; run from the feature repo that defines it."
        )
    from featurestore.definitions.transformation import transformation_spec

    registered = transformation_spec(view.transformation)["fingerprint"]
    if transformation_spec(fn)["fingerprint"] != registered:
        raise TransformationError(
            f"Feature view '{view.name}': the transformation in the repo differs from the "
            "applied one. Run `featurestore apply` (a new version) or check out the applied "
            "code."
        )
    return fn


@contextmanager
def _run_lock(table_root: Path) -> Iterator[Path]:
    staging_root = table_root / "_staging"
    staging_root.mkdir(parents=True, exist_ok=True)
    with open(table_root / ".materialize.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MaterializationError(
                f"Another materialization of {table_root.parent.name}@{table_root.name} is "
                "running; wait for it to finish."
            ) from None
        try:
            yield staging_root
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _message(exc: BaseException) -> str:
    if isinstance(exc, ValidationFailedError):
        return str(exc)
    text = str(exc)
    return text.strip().splitlines()[0] if text.strip() else "interrupted"
