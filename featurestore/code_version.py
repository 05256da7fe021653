"""Which code a run or an apply came from: the feature repo's git commit."""

from __future__ import annotations

import subprocess
from pathlib import Path


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
