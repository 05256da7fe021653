"""What every command module shares: the store (always closed), errors, JSON output, the
common options. Command modules import this, never the app that registers them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from typer.core import TyperGroup

from featurestore.errors import EntityInputError, FeatureStoreError, RepoLoadError
from featurestore.urls import redact

if TYPE_CHECKING:
    from featurestore.store import FeatureStore

RepoOption = Annotated[
    Path,
    typer.Option(
        "--repo",
        "-r",
        envvar="FEATURESTORE_REPO",
        help="Feature repo folder (holds featurestore.yaml).",
        show_default=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
# Long lists (plan, apply, list, describe) print a page for people; --json prints all.
DEFAULT_LIMIT = 50
LimitOption = Annotated[
    int | None,
    typer.Option(
        "--limit",
        min=0,
        help="List at most N (default 50; 0: all). --json lists all unless given.",
        show_default=False,
    ),
]
OffsetOption = Annotated[int, typer.Option("--offset", min=0, help="Skip the first M.")]

F = TypeVar("F", bound=Callable[..., Any])


def default_command(name: str) -> type[TyperGroup]:
    """A command group whose bare form runs ``name``: `featurestore stream VIEW` is
    `featurestore stream run VIEW`."""

    class DefaultCommand(TyperGroup):
        # ctx: typer's own (vendored) click Context, whatever click is installed.
        def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
            if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
                args = [name, *args]
            return super().parse_args(ctx, args)

    return DefaultCommand


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    # Messages quote URLs, and third-party errors inside them too: redact all of it.
    typer.secho(f"error: {redact(message)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Print a FeatureStoreError's message instead of a traceback. A repo's problems are
    listed up to the command's ``--limit`` (DEFAULT_LIMIT if it has none)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RepoLoadError as exc:
            fail(exc.text(text_limit(kwargs.get("limit"))))
        except FeatureStoreError as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


def echo_json(value: Any) -> None:
    """Indented JSON on stdout; datetimes and paths as strings."""
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode())


@contextmanager
def open_store(repo: Path) -> Iterator[FeatureStore]:
    """The repo's FeatureStore, closed when the command ends (also on errors and exits):
    its audit queue flushed and its Redis connections released."""
    from featurestore.store import FeatureStore

    with FeatureStore(repo) as store:
        yield store


def text_limit(limit: int | None) -> int:
    """People get DEFAULT_LIMIT lines unless they ask (0: all)."""
    return DEFAULT_LIMIT if limit is None else limit


def json_limit(limit: int | None) -> int:
    """Scripts get everything unless they ask for a page."""
    return limit or 0


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO date or time given to ``option``; naive times are UTC."""
    from datetime import UTC

    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise EntityInputError(
            f"{option} {value!r} is not an ISO date or time, e.g. 2026-11-01 or "
            "2026-11-01T12:00:00Z (times without a zone are UTC)."
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
