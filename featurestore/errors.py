"""Typed errors of featurestore.

Every message says what went wrong, with which object, and what to do next.
Leaves also subclass the builtin they refine, so generic ``except`` clauses
keep working, and carry an ``http_status`` that the HTTP server maps in one
handler.

    FeatureStoreError
    ├── DefinitionError (ValueError)          a definition is malformed
    │   ├── InvalidDtypeError                 unknown or unsupported dtype
    │   └── InvalidReferenceError             'view:feature' cannot be parsed
    ├── RepoError                             the feature repo cannot be loaded
    │   ├── RepoConfigError (ValueError)      featurestore.yaml is wrong
    │   └── RepoLoadError (ValueError)        one or more definition problems
    ├── NotFoundError (LookupError)           something named does not exist
    │   ├── FeatureViewNotFound
    │   ├── FeatureNotFound
    │   ├── VersionNotFound
    │   ├── FeatureNotServedOnline            its view is declared online=False
    │   └── ObjectNotFound
    ├── RegistryError                         the registry store failed
    │   ├── RegistryUnavailable (ConnectionError)
    │   └── ApplyError                        an apply failed and was rolled back
    ├── ConflictError (ValueError)            refused: it would break something in use
    ├── SchemaMismatchError (ValueError)      data does not match its definition
    ├── EntityInputError (ValueError)         entity rows are unusable (column, type, nulls)
    │   ├── RequestTooLargeError              more entity rows than a lookup may ask for
    │   ├── MalformedRequestError             a list or object where a scalar belongs
    │   └── PushRejected                      pushed rows are bad (each named): none written
    ├── OnlineStoreUnavailable (ConnectionError)  Redis cannot be reached
    │   └── OnlineStoreRefused                Redis answered a lookup with an error
    ├── AuthenticationError (PermissionError) no, malformed, unknown, revoked or expired key
    ├── AccessDeniedError (PermissionError)   the caller may not do this
    │   └── PolicyDeniedError                 a policy forbids a model a feature
    ├── RateLimited (RuntimeError)            past a model's or project's serving limit (429)
    ├── PushSpoolError (OSError)              pushed rows cannot be spooled to local disk
    ├── CorruptFileError (OSError)            a Parquet file is truncated, garbage or fails
    │                                         its page checksums (names the file)
    ├── TrainingInputGone (FileNotFoundError) a recorded training set's input is gone: which
    │                                         one, removed by which gc and why
    ├── FingerprintMismatch (ValueError)      a rebuilt or exported training set is not the
    │                                         one recorded
    ├── StreamError (RuntimeError)            a stream consumer cannot start or go on
    ├── MaterializationError (RuntimeError)   a materialization run failed, nothing committed
    │   ├── SourceNotFoundError (FileNotFoundError)
    │   ├── TransformationError
    │   └── ValidationFailedError             the batch failed the view's expectations
    ├── MissingExtraError (ImportError)       an optional dependency is absent
    ├── ServerStartError (OSError)            `featurestore serve` cannot listen on its port
    ├── DevServiceError (RuntimeError)        `featurestore dev` could not act
    │   ├── PortInUseError
    │   └── BinaryNotFoundError (FileNotFoundError)
    └── UsageError (ValueError)               a command option has a value it does not take
"""

from __future__ import annotations

import difflib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass


class FeatureStoreError(Exception):
    """Root of every error raised by featurestore."""

    http_status: int = 500


class DefinitionError(FeatureStoreError, ValueError):
    http_status = 422


class InvalidDtypeError(DefinitionError):
    pass


class InvalidReferenceError(DefinitionError):
    http_status = 400


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found while loading a repo, located at a file and line."""

    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.file is None:
            return self.message
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class RepoError(FeatureStoreError):
    http_status = 422


class RepoConfigError(RepoError, ValueError):
    pass


class RepoLoadError(RepoError, ValueError):
    """Raised with every problem of a repo at once, not just the first."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(self.text())

    def text(self, limit: int = 0) -> str:
        """The message listing at most ``limit`` problems (0: all): a broken file in a big
        repo can leave thousands of references dangling, and the first lines say why."""
        count = len(self.problems)
        header = f"The feature repo has {count:,} problem{'s' if count != 1 else ''}:"
        shown = self.problems[:limit] if limit else self.problems
        lines = [header, *(f"  - {p}" for p in shown)]
        if len(shown) < count:
            lines.append(
                f"  ... and {count - len(shown):,} more (often caused by the first ones; "
                "--limit 0 lists them all)"
            )
        lines.append("Fix them and run the command again.")
        return "\n".join(lines)


class NotFoundError(FeatureStoreError, LookupError):
    http_status = 404


class FeatureViewNotFound(NotFoundError):
    pass


class FeatureNotFound(NotFoundError):
    pass


class VersionNotFound(NotFoundError):
    pass


class FeatureNotServedOnline(NotFoundError):
    """The feature exists but its view is not materialized online (online=False)."""


class ObjectNotFound(NotFoundError):
    pass


class RegistryError(FeatureStoreError):
    http_status = 503


class RegistryUnavailable(RegistryError, ConnectionError):
    pass


class ApplyError(RegistryError):
    http_status = 500


class AuthenticationError(FeatureStoreError, PermissionError):
    """The caller's API key is missing, malformed, unknown, revoked or expired."""

    http_status = 401


class AccessDeniedError(FeatureStoreError, PermissionError):
    """The caller is known but may not do this (e.g. read another model's features)."""

    http_status = 403


class PolicyDeniedError(AccessDeniedError):
    """A policy forbids a model a feature (the message names the rule)."""

    def __init__(self, message: str, *, model: str = "", feature: str = "", rule: str = "") -> None:
        super().__init__(message)
        self.model, self.feature, self.rule = model, feature, rule


class RateLimited(FeatureStoreError, RuntimeError):
    """A request past a model's or its project's limit in ``featurestore serve``
    (``serving.limits``): too many in flight, or entity rows faster than allowed.

    ``retry_after`` is whole seconds until it could pass (None: it never fits, being
    larger than the limit lets through at once); ``scope`` is "model" or "project" and
    ``limit`` the setting that refused it (concurrent, rows_per_second, burst_rows)."""

    http_status = 429

    def __init__(
        self, message: str, *, model: str, scope: str, limit: str, retry_after: int | None
    ) -> None:
        super().__init__(message)
        self.model, self.scope, self.limit, self.retry_after = model, scope, limit, retry_after


class ConflictError(FeatureStoreError, ValueError):
    """The request is valid but would break something in use (e.g. retire a pinned version)."""

    http_status = 409


class SchemaMismatchError(FeatureStoreError, ValueError):
    """Rows do not fit the definition they are written or joined under."""

    http_status = 422


class OnDemandViewError(FeatureStoreError, ValueError):
    """An on-demand view was asked for what only stored views have (rows to materialize,
    stream, push or clean up): its features are computed at lookup and training time."""

    http_status = 422


class EntityInputError(FeatureStoreError, ValueError):
    """Entity rows given to a training-data build or a lookup are unusable."""

    http_status = 422


class RequestTooLargeError(EntityInputError):
    """A lookup asks for more entity rows than the server allows."""

    http_status = 413


class MalformedRequestError(EntityInputError):
    """A request nests a list or an object where the API takes a scalar (an entity key's
    value, a model name, a feature reference). Checked without recursing into it."""

    http_status = 400


class PushRejected(EntityInputError):
    """Some pushed rows are bad: ``errors`` names each (row index, field, reason). A push
    is all or nothing, so none of its rows was written."""

    def __init__(self, message: str, errors: list[dict[str, object]], rows: int) -> None:
        super().__init__(message)
        self.errors = errors
        self.rows = rows


class PushSpoolError(FeatureStoreError, OSError):
    """The offline buffer cannot write its crash spool (the state folder is read-only or
    full): the push's offline rows were not buffered."""

    http_status = 503


class OnlineStoreUnavailable(FeatureStoreError, ConnectionError):
    """Redis cannot be reached; lookups and online writes fail until it is back."""

    http_status = 503


class OnlineStoreRefused(OnlineStoreUnavailable):
    """Redis answered a lookup with an error (WRONGTYPE, NOPERM, LOADING, READONLY...):
    the store cannot serve it until its data or its user's permissions are fixed."""


class OnlineStoreMisconfigured(OnlineStoreRefused):
    """``online_store.cluster`` says the opposite of what the Redis at ``redis_url`` is (a
    cluster node without it, a plain Redis with it)."""


class CorruptFileError(FeatureStoreError, OSError):
    """A source or offline Parquet file cannot be read: truncated, not Parquet, or a page
    whose bytes do not match its checksum. The message names the file and what to do."""

    http_status = 500

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:  # OSError's own would show its args as a tuple
        return str(self.args[0]) if self.args else ""


class TrainingInputGone(FeatureStoreError, FileNotFoundError):
    """A recorded training set cannot be rebuilt: an input it read (its entity rows, a
    view version's manifest or file) is gone. The message says which, and which gc
    removed it and why (or that something outside featurestore did)."""

    http_status = 410

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:  # OSError's own would show its args as a tuple
        return str(self.args[0]) if self.args else ""


class FingerprintMismatch(FeatureStoreError, ValueError):
    """Rows that should be a recorded training set (rebuilt, or an exported snapshot)
    have another content fingerprint: not the same rows, order or values."""

    http_status = 409


class StreamError(FeatureStoreError, RuntimeError):
    """A stream consumer cannot start or go on (Kafka away, a topic missing, a dead letter
    that cannot be sent); it landed nothing past what it could not handle."""


class MaterializationError(FeatureStoreError, RuntimeError):
    """A materialization run failed (source, transformation, write); nothing was committed."""

    http_status = 500


class SourceNotFoundError(MaterializationError, FileNotFoundError):
    """A view's source path does not exist or holds no Parquet files."""


class TransformationError(MaterializationError):
    """A view's transformation raised or returned rows that do not fit the view."""


class ValidationFailedError(MaterializationError):
    """A batch failed the view's expectations: nothing was written anywhere."""

    def __init__(self, message: str, result: dict | None = None) -> None:
        super().__init__(message)
        self.result = result or {}


class MissingExtraError(FeatureStoreError, ImportError):
    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"This needs the optional dependency '{module}'. "
            f"Install it with: pip install 'featurestore[{extra}]'"
        )


class ServerStartError(FeatureStoreError, OSError):
    """`featurestore serve` cannot listen on its host and port (in use, not allowed)."""


class DevServiceError(FeatureStoreError, RuntimeError):
    pass


class PortInUseError(DevServiceError):
    pass


class BinaryNotFoundError(DevServiceError, FileNotFoundError):
    pass


class UsageError(FeatureStoreError, ValueError):
    """A command-line option or argument has a value it does not take (an unknown kind,
    a malformed ``--tag``); the message lists what it takes."""

    http_status = 400


SUGGEST_AMONG = 500  # candidates compared in full by did_you_mean


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return " Did you mean 'x'?" for the closest candidate, or "".

    Among many candidates (a registry of 100,000 models), only the ``SUGGEST_AMONG`` nearest
    by length and shared characters are compared in full: comparing them all cost seconds
    of CPU for one mistyped name, an error a client can send at will."""
    names = list(candidates)
    if len(names) > SUGGEST_AMONG:
        letters = set(name)
        size = len(name)
        names = heapq.nlargest(
            SUGGEST_AMONG, names, key=lambda c: (len(letters.intersection(c)), -abs(len(c) - size))
        )
    matches = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f" Did you mean '{matches[0]}'?" if matches else ""
