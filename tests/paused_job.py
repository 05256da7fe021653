"""Test-only entry point: a job that stops at a stage, for a test to kill it there.

    python tests/paused_job.py STAGE MARKER materialize REPO ENGINE VIEW [VIEW ...]
    python tests/paused_job.py STAGE MARKER stream REPO FLUSH_SECONDS VIEW [VIEW ...]

Runs the materialization job or the stream consumer in this process with an ``on_stage``
hook: at STAGE it writes MARKER and blocks until the process is killed. Production code
only calls the hook it is given.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from featurestore import FeatureStore
from featurestore.stages import StageHook


def pause_at(stage: str, marker: Path) -> StageHook:
    def hook(reached: str) -> None:
        if reached == stage:
            marker.write_text(stage)
            threading.Event().wait()  # until the test kills this process

    return hook


def main(argv: list[str]) -> None:
    stage, marker, job, repo, option, *views = argv
    hook = pause_at(stage, Path(marker))
    with FeatureStore(repo) as store:
        if job == "materialize":
            from featurestore.materialize.job import materialize

            materialize(store, views, engine=option, progress=print, on_stage=hook)
        elif job == "stream":
            from featurestore.streaming.consumer import run

            run(store, views, flush_seconds=float(option), progress=print, on_stage=hook)
        else:
            raise SystemExit(f"unknown job {job!r}: materialize or stream")


if __name__ == "__main__":
    main(sys.argv[1:])
