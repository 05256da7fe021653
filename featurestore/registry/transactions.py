"""Transactions: what the registry's mixins (audit, runs, credentials, drift) need of it."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, CursorResult


class Transactions:
    """Base of the Registry mixins: ``Registry`` implements both methods."""

    def _read(self) -> AbstractContextManager[Connection]:
        """A consistent read transaction."""
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:
        """One atomic write transaction holding the registry-wide write lock."""
        raise NotImplementedError


def inserted_id(result: CursorResult[Any]) -> int:
    """The integer key an INSERT generated (SQLAlchemy types it optional: other statements
    have none)."""
    key = result.inserted_primary_key
    if key is None:
        raise TypeError("inserted_id needs the result of an INSERT")
    return int(key[0])
