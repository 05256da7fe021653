"""Bytecode caches for repo files that are checked against the source's content.

Compiling a repo's files was 40% of loading a big repo, so the loader keeps their
bytecode. Python's usual caches are checked by modification time to the second, and an
edit saved within the second of the last load would run stale code; these are
"checked hash-based" caches (PEP 552): every import compares a hash of the source with
the one the cache was compiled from, so an edit is always seen.
"""

from __future__ import annotations

import importlib.util
import py_compile
from pathlib import Path

_CHECKED_HASH_FLAGS = 0b11  # PEP 552: hash-based, check the source


def refresh_bytecode(path: Path) -> bool:
    """Make ``path``'s cache current (compiling only when the source changed); False
    when it could not be written (a read-only folder, a syntax error: the import then
    compiles from source, and reports the error, as it would without a cache)."""
    try:
        cache = Path(importlib.util.cache_from_source(str(path)))
        expected = importlib.util.source_hash(path.read_bytes())
        try:
            with cache.open("rb") as f:
                header = f.read(16)
        except OSError:
            header = b""
        if (
            len(header) == 16
            and header[:4] == importlib.util.MAGIC_NUMBER
            and int.from_bytes(header[4:8], "little") == _CHECKED_HASH_FLAGS
            and header[8:16] == expected
        ):
            return True
        py_compile.compile(
            str(path),
            cfile=str(cache),
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
        return True
    except (py_compile.PyCompileError, OSError, ValueError, SyntaxError):
        return False
