"""Bytecode caches for repo files that are checked against the source's content.

Compiling a repo's files was 40% of loading a big repo, so the loader keeps their
bytecode. Python's usual caches are checked by modification time to the second, and an
edit saved within the second of the last load would run stale code; these are
"checked hash-based" caches (PEP 552): every import compares a hash of the source with
the one the cache was compiled from, so an edit is always seen.
"""

from __future__ import annotations

import importlib.util
import marshal
import py_compile
from pathlib import Path

_CHECKED_HASH_FLAGS = 0b11  # PEP 552: hash-based, check the source


def _intact(cached: bytes) -> bool:
    """Whether the code after the header unmarshals: a cache damaged from outside (a full
    disk, a copy cut short) would otherwise fail the import with "bad marshal data"; it is
    compiled again instead. The import unmarshals it anyway; once more is a small part of a load."""
    try:
        marshal.loads(memoryview(cached)[16:])
    except (ValueError, EOFError, TypeError):
        return False
    return True


def refresh_bytecode(path: Path) -> bool:
    """Make ``path``'s cache current (compiling only when the source changed); False
    when it could not be written (a read-only folder, a syntax error: the import then
    compiles from source, and reports the error, as it would without a cache)."""
    try:
        cache = Path(importlib.util.cache_from_source(str(path)))
        expected = importlib.util.source_hash(path.read_bytes())
        try:
            cached = cache.read_bytes()
        except OSError:
            cached = b""
        if (
            cached[:4] == importlib.util.MAGIC_NUMBER
            and int.from_bytes(cached[4:8], "little") == _CHECKED_HASH_FLAGS
            and cached[8:16] == expected
            and _intact(cached)
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
