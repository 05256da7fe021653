"""Stage hooks: a long job calls ``on_stage(name)`` as it passes each stage.

Production passes nothing (``no_stage``); a test passes a hook that stops the process
there, to kill it at a known point and check what a re-run or restart finds.
"""

from __future__ import annotations

from collections.abc import Callable

StageHook = Callable[[str], None]


def no_stage(_stage: str) -> None:
    """The default stage hook: nothing."""
