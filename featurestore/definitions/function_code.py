"""The code of an on-demand function, as the registry carries it to servers and jobs.

A server answers lookups without the feature repo's files, and a model pinned to an old
version must get that version's function, so the registry keeps each version's code:
the function's own source (decorators and annotations removed: they do not change
values) and the import statements of its module that bind names it uses. Module-level
constants it reads (numbers, strings, tuples of them) are carried as assignments. Any
other module-level name (a helper function, an object) is refused when the view is
defined, with what to do, rather than failing at the first lookup.

``rebuild`` compiles that code once per fingerprint; lookups and training sets both call
the rebuilt function, so they run the same code.
"""

from __future__ import annotations

import ast
import builtins
import dis
import hashlib
import inspect
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import CodeType
from typing import Any

from featurestore.errors import DefinitionError

_CONSTANT_TYPES = (int, float, str, bool, bytes, type(None))


@dataclass(frozen=True, slots=True)
class FunctionCode:
    name: str  # the function's name in its module
    source: str  # its definition as written (decorators included), for people to read
    code: str  # what runs: imports, carried constants, then the bare definition
    fingerprint: str

    def to_spec(self) -> dict[str, str]:
        return {
            "name": self.name,
            "source": self.source,
            "code": self.code,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, str]) -> FunctionCode:
        return cls(spec["name"], spec["source"], spec["code"], spec["fingerprint"])


def function_code(fn: Callable[..., Any], owner: str) -> FunctionCode:
    """The carried code of ``fn``; DefinitionError naming ``owner`` if it cannot travel."""
    if isinstance(fn, FunctionCode):
        return fn
    preamble, definition = carried_parts(fn, owner)
    name = fn.__name__
    code = "\n".join([*preamble, definition])
    fingerprint = hashlib.sha256(_canonical(code).encode()).hexdigest()[:16]
    carried = FunctionCode(name, textwrap.dedent(inspect.getsource(fn)), code, fingerprint)
    try:
        rebuild(carried)
    except Exception as exc:
        raise DefinitionError(
            f"{owner}: function '{name}' does not rebuild from its carried code "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    return carried


def carried_parts(fn: Callable[..., Any], owner: str) -> tuple[list[str], str]:
    """What the registry carries of ``fn``: the import statements and constant assignments
    it needs (one per line), and its bare definition (no decorators, annotations or
    docstring). ``import-feast`` writes the same parts into a converted repo."""
    name = getattr(fn, "__name__", repr(fn))
    code_obj = getattr(fn, "__code__", None)
    if not inspect.isfunction(fn) or code_obj is None or name == "<lambda>":
        raise DefinitionError(
            f"{owner}: the function must be defined with `def` in a repo file (got {fn!r}), "
            "so the registry can keep its code."
        )
    if code_obj.co_freevars:
        raise DefinitionError(
            f"{owner}: function '{name}' uses {', '.join(code_obj.co_freevars)} from an "
            "enclosing function; define it at the top level of a repo file."
        )
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise DefinitionError(
            f"{owner}: the source of function '{name}' cannot be read ({exc}). Define it with "
            "`def` in a feature repo file."
        ) from exc
    definition = _bare_definition(source, name, owner)
    module_globals = fn.__globals__
    imports = _module_imports(code_obj.co_filename)
    lines: list[str] = []
    missing: list[str] = []
    for used_name in sorted(_global_names(code_obj)):
        if used_name in imports:
            lines.append(imports[used_name])
        elif used_name in module_globals and _is_constant(module_globals[used_name]):
            lines.append(f"{used_name} = {module_globals[used_name]!r}")
        elif used_name == name or hasattr(builtins, used_name):
            continue
        else:
            missing.append(used_name)
    if missing:
        raise DefinitionError(
            f"{owner}: function '{name}' uses {', '.join(repr(m) for m in missing)} from its "
            "module. The registry carries the function, its module's imports and constants, "
            "not other module-level objects: move them inside the function, or import them "
            "from an installed package."
        )
    return list(dict.fromkeys(lines)), definition


def _bare_definition(source: str, name: str, owner: str) -> str:
    """The ``def`` without decorators, annotations or docstring."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise DefinitionError(f"{owner}: the source of '{name}' does not parse ({exc}).") from exc
    node = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name),
        None,
    )
    if node is None:
        raise DefinitionError(f"{owner}: no `def {name}` found in its source.")
    node.decorator_list = []
    node.returns = None
    for arg in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs):
        arg.annotation = None
    for extra in (node.args.vararg, node.args.kwarg):
        if extra is not None:
            extra.annotation = None
    for inner in ast.walk(node):
        if isinstance(inner, ast.AnnAssign) and inner.value is None:
            continue
        body = getattr(inner, "body", None)
        if (
            isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and isinstance(body, list)
            and len(body) > 1
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            inner.body = body[1:]
    return ast.unparse(node)


def _canonical(code: str) -> str:
    return ast.dump(ast.parse(code), annotate_fields=False, include_attributes=False)


def _code_objects(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _code_objects(const)


def _global_names(code: CodeType) -> set[str]:
    """The global names the function (and functions nested in it) read."""
    names: set[str] = set()
    for inner in _code_objects(code):
        for instruction in dis.get_instructions(inner):
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                names.add(str(instruction.argval).removeprefix("NULL + "))
    return names


def _module_imports(filename: str) -> dict[str, str]:
    """Bound name -> the import statement binding it, from the top level of a module's
    file (read from the file: the module may be gone from sys.modules, as Feast's are)."""
    try:
        text = Path(filename).read_text()
    except (OSError, UnicodeDecodeError):
        text = ""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return {}
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                out[bound] = ast.unparse(ast.Import(names=[alias]))
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                bound = alias.asname or alias.name
                out[bound] = ast.unparse(
                    ast.ImportFrom(module=node.module, names=[alias], level=node.level)
                )
    return out


def _is_constant(value: Any) -> bool:
    if isinstance(value, _CONSTANT_TYPES):
        return True
    if isinstance(value, tuple | frozenset):
        return all(_is_constant(v) for v in value)
    return False


_REBUILT: dict[str, Callable[..., Any]] = {}
_LOCK = threading.Lock()


def rebuild(code: FunctionCode) -> Callable[..., Any]:
    """The function compiled from its carried code, once per fingerprint and process."""
    fn = _REBUILT.get(code.fingerprint)
    if fn is not None:
        return fn
    with _LOCK:
        fn = _REBUILT.get(code.fingerprint)
        if fn is None:
            namespace: dict[str, Any] = {"__name__": f"featurestore_on_demand_{code.name}"}
            exec(compile(code.code, f"<on-demand {code.name}>", "exec"), namespace)
            fn = namespace[code.name]
            _REBUILT[code.fingerprint] = fn
    return fn
