"""Transformations: user code that turns source rows into feature rows.

A transformation is a function ``(pyarrow.Table) -> pyarrow.Table`` applied
batch by batch; it must be row-local (a row's output depends only on that
row) so that Spark partitions, DuckDB and stream micro-batches give the same
result. Its identity for versioning is the AST of its source, so editing a
comment or reformatting does not make a new version, while changing logic
does.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from featurestore.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class RegisteredTransformation:
    """A transformation as the registry knows it: its code, not a callable.

    Jobs run the function from the loaded feature repo and compare its
    fingerprint with this one, so registered and executed code cannot drift.
    """

    name: str
    source: str
    fingerprint: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise DefinitionError(
            f"Transformation '{self.name}' was read from the registry, which keeps its code but "
            "not a callable. Load the feature repo (FeatureStore(repo_path=...)) to run it."
        )


def transformation_spec(fn: Callable[..., Any] | RegisteredTransformation) -> dict[str, str]:
    if isinstance(fn, RegisteredTransformation):
        return {"name": fn.name, "source": fn.source, "fingerprint": fn.fingerprint}
    name = getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn)))
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise DefinitionError(
            f"Transformation {name!r}: its source code cannot be read ({exc}). Define it with "
            "`def` in a feature repo file so its version can be derived from its code."
        ) from exc
    try:
        tree = ast.parse(source)
    except SyntaxError:  # e.g. a lambda inside a larger expression
        canonical = source
    else:
        _strip_docstrings(tree)
        canonical = ast.dump(tree, annotate_fields=False, include_attributes=False)
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return {"name": name, "source": source, "fingerprint": fingerprint}


def _strip_docstrings(tree: ast.AST) -> None:
    """Docstrings explain code; they do not change values, so they do not version."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body
            if (
                len(body) > 1
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:]


def transformation_from_spec(spec: dict[str, str] | None) -> RegisteredTransformation | None:
    if spec is None:
        return None
    return RegisteredTransformation(spec["name"], spec["source"], spec["fingerprint"])
