"""Keeping the registry's catalog out of the cyclic garbage collector's way.

A catalog of a big registry is hundreds of thousands of objects (a 100,000-model
snapshot holds 220,000 heads), and they live until the next reload. A full collection
scans every tracked object while holding the interpreter: at 100,000 models each one
stalled every lookup of the worker for about 300 ms, several times per reload (measured,
benchmarks/registry_serving.py). ``gc.freeze()`` moves what exists into a generation no
collection scans, so collections see only what was made since.

Frozen objects are still freed by reference counting, so a replaced catalog goes as
soon as nothing refers to it, provided it is in no reference cycle (tests check that it
is not). Young cyclic garbage (a raised exception and its frames) is collected before
each freeze, which scans only the youngest generations (thousands of objects, not the
catalog); older cyclic garbage made since the last freeze stays: bounded by what one
interval between reloads leaves.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Freeze what the process holds now (call it right after a catalog is built)."""
    gc.collect(1)
    gc.freeze()
