"""What a materialization engine is given and must do, and the checks every engine shares.

The job (``job.py``) owns the run: its window, the lock, the run record. An engine owns
one view version's data path: read the window, conform, validate, write online, commit
offline, filling the run record's counts as it goes. Engines are looked up by name
(``engines.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from featurestore.errors import OnlineStoreUnavailable, ValidationFailedError
from featurestore.stages import StageHook, no_stage
from featurestore.urls import redact

if TYPE_CHECKING:
    from featurestore.config import RepoConfig
    from featurestore.definitions import FeatureView
    from featurestore.offline.writer import OfflineStore, WriteResult
    from featurestore.online.store import OnlineStore
    from featurestore.registry import Registry
    from featurestore.registry.runs import RunRecord

Progress = Callable[[str], None]
Transformation = Callable[[Any], Any]  # pyarrow.Table -> pyarrow.Table


@dataclass
class JobContext:
    """What the job and its engines use: the repo's settings, where runs are recorded,
    and the two stores written to."""

    project: str
    config: RepoConfig  # repo_path, state_dir, redis_url, spark settings
    registry: Registry
    offline: OfflineStore
    online: OnlineStore  # the online store: write_table(layout, table)
    on_stage: StageHook = no_stage  # "validated", "staged" (Spark), "online"


@dataclass
class ViewTask:
    """One view version's run, as handed to an engine. The engine fills ``record``'s
    sources and counts and ``seconds`` per stage."""

    view: FeatureView
    version: int
    record: RunRecord
    staging: Path  # a folder beside the table for files not yet committed
    transformation: Transformation | None
    created_at: datetime  # the created timestamp of rows whose source has none
    progress: Progress = lambda _m: None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.record.label


class MaterializeEngine(Protocol):
    """A way to run one view version's data path."""

    def describe(self) -> str:
        """What runs the job, for the run record (e.g. ``spark 4.0.1 local[2]``)."""
        ...

    def run(self, ctx: JobContext, task: ViewTask) -> None:
        """Read the task's window, conform, validate, write online, then commit offline
        (last: a run stopped before it leaves no visible offline rows)."""
        ...


def validate_batch(ctx: JobContext, task: ViewTask, frame: Any) -> None:
    """Great Expectations on ``frame`` (Spark or pandas), recorded on the run; raises
    ValidationFailedError."""
    from featurestore.quality.batch import validate_dataframe

    view, record, label = task.view, task.record, task.label
    t0 = time.perf_counter()
    report = ctx.config.state_dir / "reports" / f"{label}-run{record.id}.json"
    record.validation = validate_dataframe(
        frame, view.expectations, label=label, report_path=report
    )
    task.seconds["validate"] = time.perf_counter() - t0
    if not record.validation["success"]:
        raise ValidationFailedError(failed_message(label, record.validation), record.validation)
    task.progress(
        f"{label}: {len(view.expectations)} expectation(s) passed ({task.seconds['validate']:.1f}s)"
    )


def failed_message(label: str, validation: dict[str, Any]) -> str:
    lines = [f"{label}: the batch failed its expectations; nothing was written."]
    for e in validation["expectations"]:
        if not e["success"]:
            examples = f" e.g. {', '.join(e['examples'])}" if e["examples"] else ""
            lines.append(
                f"  - {e['expectation']}: {e['unexpected_count']:,} of {validation['rows']:,} "
                f"rows ({e['unexpected_percent']:.2f}%) unexpected{examples}"
            )
    lines.append(f"Full report: {validation['report']}")
    return "\n".join(lines)


def online_unavailable(label: str, redis_url: str) -> OnlineStoreUnavailable:
    return OnlineStoreUnavailable(
        f"{label}: Redis at {redact(redis_url)} is unreachable; nothing was committed "
        "offline. Start Redis (`featurestore dev up`) and run again."
    )


def committed(task: ViewTask, result: WriteResult, started: float) -> None:
    """Record an engine's offline commit (begun at ``started``) on the run and say so."""
    task.record.rows_offline = result.rows_written
    task.record.offline_manifest = result.manifest.sequence
    task.seconds["commit"] = time.perf_counter() - started
    task.progress(
        f"{task.label}: {result.rows_written:,} rows committed offline "
        f"({result.rows_replaced:,} replaced), manifest {result.manifest.sequence}"
    )
