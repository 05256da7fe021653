"""Filtering and paging what ``list`` and ``describe`` print, for projects of 100,000 objects.

A filter is one pass over the snapshot already in memory (no registry query per object);
a page is a slice of the sorted matches with the total, so the text can say "showing
1-50 of 10,000; --offset 50 for more" and JSON can report the total.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Generic, TypeVar

from featurestore.errors import UsageError
from featurestore.registry.snapshot import ACTIVE, Head, RegistrySnapshot

T = TypeVar("T")


def parse_tags(values: Iterable[str] | None) -> tuple[tuple[str, str | None], ...]:
    """``--tag team=risk`` (the value may be a glob) or ``--tag team`` (has the tag)."""
    out = []
    for value in values or ():
        key, eq, wanted = value.partition("=")
        if not key.strip():
            raise UsageError(
                f"--tag {value!r}: write KEY=VALUE (e.g. --tag team=risk) or KEY for any value."
            )
        out.append((key.strip(), wanted if eq else None))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class HeadFilter:
    """Which heads ``list`` shows; None means any. Strings may be globs (``team-1*``)."""

    kinds: frozenset[str] | None = None
    name: str | None = None
    owner: str | None = None
    tags: tuple[tuple[str, str | None], ...] = ()
    purpose: str | None = None
    retired: bool = False

    def matches(self, head: Head) -> bool:
        if not self.retired and head.status != ACTIVE:
            return False
        if self.kinds is not None and head.kind not in self.kinds:
            return False
        if self.name is not None and not fnmatchcase(head.name, self.name):
            return False
        spec = head.spec
        if self.owner is not None and not fnmatchcase(str(spec.get("owner") or ""), self.owner):
            return False
        if self.purpose is not None and not fnmatchcase(
            str(spec.get("purpose") or ""), self.purpose
        ):
            return False
        tags = spec.get("tags") or {}
        for key, wanted in self.tags:
            if key not in tags or (wanted is not None and not fnmatchcase(str(tags[key]), wanted)):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    offset: int

    def footer(self, noun: str) -> str:
        """'showing 1-50 of 10,000 objects; --offset 50 for more'."""
        if not self.total:
            return f"No {noun} match."
        if not self.items:
            return f"showing none of {self.total:,} {noun}: --offset {self.offset} is past the end."
        last = self.offset + len(self.items)
        text = f"showing {self.offset + 1:,}-{last:,} of {self.total:,} {noun}"
        return text + (f"; --offset {last} for more" if last < self.total else "")


def page(items: Sequence[T], offset: int, limit: int) -> Page[T]:
    """``limit`` items from ``offset`` (limit 0: all from offset)."""
    end = None if not limit else offset + limit
    return Page(list(items[offset:end]), len(items), offset)


def list_heads(
    snapshot: RegistrySnapshot, where: HeadFilter, offset: int, limit: int
) -> Page[Head]:
    """The matching heads by kind and name, one page of them."""
    matched = [h for h in snapshot.heads.values() if where.matches(h)]
    matched.sort(key=lambda h: (h.kind, h.name))
    return page(matched, offset, limit)
