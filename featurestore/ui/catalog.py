"""The catalog: every active object and every feature, searched as you type.

The index is built once per registry snapshot (one pass over the heads already in memory)
and each search is a scan of lowercase strings: at 10,000 views of 10 features, a query
is a filter over ~110,000 short entries, and a page renders 50 of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from featurestore.registry.snapshot import RegistrySnapshot
from featurestore.ui.page import PAGE_SIZE, text_value

# Kinds in the order a search lists them: what people look for first.
ORDER = ("feature_view", "feature", "model", "feature_service", "entity", "source", "policy")
LABELS = {
    "feature_view": "view",
    "feature": "feature",
    "model": "model",
    "feature_service": "service",
    "entity": "entity",
    "source": "source",
    "policy": "policy",
    "drift_monitor": "drift monitor",
}


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str
    name: str
    owner: str
    description: str
    tags: dict[str, str]
    entities: tuple[str, ...] = ()
    purpose: str = ""
    dtype: str = ""
    view: str = ""  # a feature's view
    text: str = field(default="", repr=False)  # what a search matches, lowercase

    def to_json(self, link: str) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": LABELS.get(self.kind, self.kind),
            "name": self.name,
            "owner": self.owner,
            "description": self.description,
            "tags": [f"{k}={v}" for k, v in sorted(self.tags.items())],
            "dtype": self.dtype,
            "url": link,
        }


def _tags(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()} if isinstance(value, dict) else {}


def _entry(kind: str, name: str, spec: dict[str, Any], **extra: Any) -> Entry:
    tags = _tags(spec.get("tags"))
    entry = Entry(
        kind=kind,
        name=name,
        owner=str(spec.get("owner") or ""),
        description=str(spec.get("description") or ""),
        tags=tags,
        **extra,
    )
    words = [
        kind,
        LABELS.get(kind, kind),
        name,
        entry.owner,
        entry.description,
        entry.purpose,
        entry.dtype,
        *entry.entities,
        *(f"{k}={v}" for k, v in tags.items()),
    ]
    object.__setattr__(entry, "text", "\n".join(words).lower())
    return entry


def build_index(snapshot: RegistrySnapshot) -> list[Entry]:
    entries: list[Entry] = []
    for (kind, name), head in snapshot.heads.items():
        if head.status != "active":
            continue
        spec = head.spec
        entities = tuple(str(e) for e in spec.get("entities") or ())
        entries.append(
            _entry(kind, name, spec, entities=entities, purpose=str(spec.get("purpose") or ""))
        )
        if kind != "feature_view":
            continue
        for f in spec.get("schema") or ():
            entries.append(
                _entry(
                    "feature",
                    f"{name}:{f['name']}",
                    {
                        "owner": spec.get("owner"),
                        "description": f.get("description"),
                        # A feature has its view's tags, and its own win.
                        "tags": {**_tags(spec.get("tags")), **_tags(f.get("tags"))},
                    },
                    entities=entities,
                    dtype=str(f.get("dtype") or ""),
                    view=name,
                )
            )
    rank = {k: i for i, k in enumerate(ORDER)}
    entries.sort(key=lambda e: (rank.get(e.kind, len(ORDER)), e.name))
    return entries


@dataclass(frozen=True, slots=True)
class Query:
    text: str = ""
    kind: str = ""
    owner: str = ""
    tag: str = ""  # KEY or KEY=VALUE
    entity: str = ""
    purpose: str = ""

    @classmethod
    def of(cls, params: Any) -> Query:
        names = ("q", "kind", "owner", "tag", "entity", "purpose")
        return cls(*(text_value(params, n) for n in names))

    def params(self) -> dict[str, str]:
        return {
            "q": self.text,
            "kind": self.kind,
            "owner": self.owner,
            "tag": self.tag,
            "entity": self.entity,
            "purpose": self.purpose,
        }

    def matches(self, e: Entry) -> bool:
        keep = self.predicate()
        return keep is None or keep(e)

    def predicate(self) -> Callable[[Entry], bool] | None:
        """The filter, with only the checks this query sets (None: everything matches): the
        scan of a 10,000-view catalog runs it ~110,000 times a keystroke."""
        words = self.text.lower().split()
        checks: list[Callable[[Entry], bool]] = []
        if self.kind:
            checks.append(lambda e: e.kind == self.kind)
        if self.owner:
            checks.append(lambda e: e.owner == self.owner)
        if self.entity:
            checks.append(lambda e: self.entity in e.entities)
        if self.purpose:
            checks.append(lambda e: e.purpose == self.purpose)
        if self.tag:
            key, eq, value = self.tag.partition("=")
            checks.append(lambda e: key in e.tags and (not eq or e.tags[key] == value))
        if len(words) == 1:  # the common case, as you type
            word = words[0]
            checks.append(lambda e: word in e.text)
        elif words:
            checks.append(lambda e: all(w in e.text for w in words))
        if not checks:
            return None
        if len(checks) == 1:
            return checks[0]
        return lambda e: all(check(e) for check in checks)


def search(index: list[Entry], query: Query, offset: int, limit: int = PAGE_SIZE) -> dict[str, Any]:
    """One page of matches and the total: ``{"entries", "total", "offset"}``."""
    keep = query.predicate()
    matched = index if keep is None else [e for e in index if keep(e)]
    offset = max(0, min(offset, max(0, len(matched) - 1)))
    return {"entries": matched[offset : offset + limit], "total": len(matched), "offset": offset}


def facets(index: list[Entry]) -> dict[str, list[str]]:
    """What the filters offer: owners, tags (KEY=VALUE), entities, purposes, kinds."""
    owners: set[str] = set()
    tags: set[str] = set()
    entities: set[str] = set()
    purposes: set[str] = set()
    kinds: set[str] = set()
    for e in index:
        kinds.add(e.kind)
        if e.owner:
            owners.add(e.owner)
        tags.update(f"{k}={v}" for k, v in e.tags.items())
        if e.kind == "entity":
            entities.add(e.name)
        if e.purpose:
            purposes.add(e.purpose)
    rank = {k: i for i, k in enumerate(ORDER)}
    return {
        "kinds": sorted(kinds, key=lambda k: (rank.get(k, len(ORDER)), k)),
        "owners": sorted(owners),
        "tags": sorted(tags)[:500],
        "entities": sorted(entities),
        "purposes": sorted(purposes),
    }
