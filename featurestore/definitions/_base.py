"""What every definition shares: a name, metadata, a source location, a spec.

Definitions are frozen dataclasses built in user code. Each records the file
and line where it was created, so the repo loader can point at the exact
definition when something is wrong with it.
"""

from __future__ import annotations

import bisect
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any

from featurestore.errors import DefinitionError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True, slots=True)
class SourceLocation:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def caller_location() -> SourceLocation | None:
    """The first stack frame outside this package: where the user built the object."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        # Keyed by identity: equal code objects of two files (copies of a repo) compare
        # equal whatever their file names.
        known = _USER_FILES.get(id(code))
        if known is not None and known[0] is code:
            user_file = known[1]
        else:
            user_file = _user_file(code.co_filename)
            if len(_USER_FILES) > 4096:
                _USER_FILES.clear()
            _USER_FILES[id(code)] = (code, user_file)
        if user_file:
            return SourceLocation(user_file, _line(code, frame.f_lasti))
        frame = frame.f_back
    return None


def _user_file(raw: str) -> str:
    """The absolute path of a user's file; "" for our own frames and generated code
    (dataclass __init__ is "<string>")."""
    if raw.startswith("<"):
        return ""
    filename = os.path.abspath(raw)
    return "" if filename.startswith(_PACKAGE_DIR + os.sep) else filename


# Per code object: the file it is user code of ("" when it is not), asked once.
_USER_FILES: dict[int, tuple[CodeType, str]] = {}
# Per code object: the start offsets of its line ranges and their lines (None for
# ranges with no line), kept while one repo's modules run.
_LINE_TABLES: dict[int, tuple[CodeType, list[int], list[int | None]]] = {}


def _line(code: CodeType, lasti: int) -> int:
    """The line of bytecode offset ``lasti``. ``frame.f_lineno`` scans the code's line
    table from its start on every call, which made loading a file of 20,000 definitions
    quadratic (23 s for what took 2 s split over files); one table per code object and a
    bisection keep it linear."""
    entry = _LINE_TABLES.get(id(code))
    if entry is None or entry[0] is not code:
        if len(_LINE_TABLES) > 256:
            _LINE_TABLES.clear()
        ranges = list(code.co_lines())
        entry = (code, [r[0] for r in ranges], [r[2] for r in ranges])
        _LINE_TABLES[id(code)] = entry
    _, starts, lines = entry
    index = bisect.bisect_right(starts, lasti) - 1
    while index >= 0:
        line = lines[index]
        if line is not None:
            return line
        index -= 1
    return code.co_firstlineno


def got(value: object) -> str:
    """What arrived, for a message: "got 3 that is a int" (long values shortened)."""
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"got {shown} that is a {type(value).__name__}"


def first_not(kind: type | tuple[type, ...], items: tuple[object, ...]) -> object:
    """The first item that is not a ``kind`` (for "must be a list of ..." messages)."""
    return next((item for item in items if not isinstance(item, kind)), None)


def is_name(text: str) -> bool:
    """Whether ``text`` is a valid definition name (letters, digits, underscores)."""
    return bool(_NAME.match(text))


def check_name(kind: str, name: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise DefinitionError(
            f"{kind} name must be letters, digits and underscores, starting with a letter "
            f"(got {name!r}). Names become Redis keys and folder names, so keep them simple."
        )


def check_str(owner: str, field: str, value: object, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise DefinitionError(f"{owner}: '{field}' must be a str ({got(value)}).")


def check_tags(owner: str, tags: object) -> dict[str, str]:
    """Tags are str -> str, as in Feast; a bare set of words is accepted as word -> 'true'."""
    if tags is None:
        return {}
    if isinstance(tags, list | tuple | set | frozenset):
        tags = {str(t): "true" for t in tags}
    if not isinstance(tags, Mapping):
        raise DefinitionError(
            f"{owner}: 'tags' must be a dict of str to str (got {type(tags).__name__})."
        )
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str):
            raise DefinitionError(f"{owner}: tag keys must be str (got {key!r}).")
        out[key] = value if isinstance(value, str) else str(value).lower()
    return dict(sorted(out.items()))


def set_location(obj: Any) -> None:
    if obj.location is None:
        object.__setattr__(obj, "location", caller_location())


def metadata_spec(obj: Any) -> dict[str, Any]:
    """The fields every definition carries that never change values."""
    return {
        "description": obj.description,
        "owner": obj.owner,
        "tags": dict(obj.tags),
    }
