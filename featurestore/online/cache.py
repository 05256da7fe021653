"""The in-process lookup cache: recent Redis replies per entity key and view, in front of Redis.

Off unless ``online_store.cache`` names views or models (featurestore/config.py,
``CacheConfig``). What it holds is what Redis answered: per entity key (the hash) and
field (``view@version``) the raw value (16-byte header + MessagePack) or None (no value),
with the monotonic time its read was sent. Status and TTL expiry are computed from those
bytes when a lookup is answered (response.assemble), exactly as without the cache.

Guarantees, per lookup:

- **Staleness.** A value is served from the cache only while its read is at most the
  lookup's bound old (``max_staleness_ms`` of its view or its model, the smaller; monotonic
  clock, measured from when the read was *sent*). So anything Redis held that long ago is
  visible, including deletions (stream repair) and regressions (a failover that lost writes).
- **No reordering.** A reply never replaces what a later-sent read put in the cache, and a
  reply with an older event time than the value held does not replace it while the held
  value is within the bound. So concurrent lookups, and a Redis that briefly goes back in
  time, never make a caller see an older event time after a newer one within the bound.
  Past the bound Redis wins: a cache that outvoted Redis for longer would keep a lost or
  repaired value alive in one process while the others serve Redis's.
- **One round trip.** Commands with every field fresh are answered here; the others go to
  the store together, in the lookup's one round trip.

Memory: at most ``max_entries`` entity keys (least recently used go first); ``stats()``
reports them and the bytes of the values held.

This module is on the online read path: standard library only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from featurestore.errors import did_you_mean
from featurestore.online.layout import HEADER

if TYPE_CHECKING:
    from featurestore.config_sections import CacheConfig
    from featurestore.online.plan import LookupPlan
    from featurestore.registry.snapshot import RegistrySnapshot

log = logging.getLogger("featurestore.cache")
_event = HEADER.unpack_from
MAX_PLANS = 10_000

# Per entity set of a plan: (field, bound in ns or None when that view is not cached).
FieldBounds = tuple[tuple[bytes, int | None], ...]


class PlanBounds:
    """What the cache does for one plan, per entity set: each field's bound (``fields``);
    the (position, field, bound) of the cached ones, which a reply fills (``fills``; empty:
    the set's keys never enter the cache); and, when every field is cached, the fields and
    bounds a command of that set may be answered with (``served``), else None."""

    __slots__ = ("fields", "fills", "served")

    def __init__(self, fields: tuple[FieldBounds, ...]) -> None:
        self.fields = fields
        self.fills: tuple[tuple[tuple[int, bytes, int], ...], ...] = tuple(
            tuple((pos, f, b) for pos, (f, b) in enumerate(per) if b is not None) for per in fields
        )
        self.served: tuple[tuple[tuple[bytes, int], ...] | None, ...] = tuple(
            tuple((f, b) for _pos, f, b in fill) if len(fill) == len(per) else None
            for per, fill in zip(fields, self.fills, strict=True)
        )


class LookupCache:
    """Entity-row replies, bounded by ``max_entries`` keys (LRU), for one process.

    ``views`` and ``models`` map names to ``max_staleness_ms``; ``clock`` is monotonic
    nanoseconds (tests inject one). Thread-safe: each lookup takes the lock twice (once to
    answer, once to fill), never across a round trip.
    """

    def __init__(
        self,
        *,
        max_entries: int,
        views: dict[str, int] | None = None,
        models: dict[str, int] | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.max_entries = max_entries
        self.views = dict(views or {})
        self.models = dict(models or {})
        self.clock = clock
        self._rows: OrderedDict[bytes, dict[bytes, tuple[bytes | None, int]]] = OrderedDict()
        self._lock = threading.Lock()
        self._plans: dict[int, tuple[LookupPlan, PlanBounds | None]] = {}
        self.hits = 0  # commands answered here
        self.misses = 0  # commands sent to the store
        self.evictions = 0
        self._bytes = 0

    @classmethod
    def from_config(cls, config: CacheConfig | None) -> LookupCache | None:
        if config is None or not (config.views or config.models):
            return None
        return cls(max_entries=config.max_entries, views=config.views, models=config.models)

    def check_names(self, snapshot: RegistrySnapshot) -> list[str]:
        """Warnings for configured views and models the registry does not have (a typo
        would silently cache nothing). Logged, not raised: a setting left behind by a
        removed view must not stop a server from starting."""
        problems = []
        for kind, names in (("feature_view", self.views), ("model", self.models)):
            known = snapshot.active(kind)
            for name in names:
                if name not in known:
                    problems.append(
                        f"online_store.cache.{kind.split('_')[-1]}s names '{name}', which "
                        f"project '{snapshot.project}' does not have; it caches nothing."
                        f"{did_you_mean(name, known)}"
                    )
        for problem in problems:
            log.warning("%s", problem)
        return problems

    # -- per plan ------------------------------------------------------------------------

    def bounds(self, plan: LookupPlan) -> PlanBounds | None:
        """The plan's bounds (None: nothing it reads is cached), decided once per plan."""
        known = self._plans.get(id(plan))
        if known is not None and known[0] is plan:
            return known[1]
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()  # plans change with the registry; old ones must not pile up
        decided = self._decide(plan)
        self._plans[id(plan)] = (plan, decided)  # holding the plan keeps its id unique
        return decided

    def _decide(self, plan: LookupPlan) -> PlanBounds | None:
        model_ms = self.models.get(plan.policy_model or plan.model or "")
        fields = []
        for kr in plan.key_reads:
            per_field = []
            for view in kr.views:
                given = [ms for ms in (self.views.get(view.layout.view), model_ms) if ms]
                per_field.append((view.layout.field, min(given) * 1_000_000 if given else None))
            fields.append(tuple(per_field))
        if all(b is None for f in fields for _, b in f):
            return None
        return PlanBounds(tuple(fields))

    # -- per lookup ----------------------------------------------------------------------

    def answer(
        self, commands: Sequence[tuple], bounds: PlanBounds, n: int
    ) -> tuple[list[Any], list[int], int]:
        """Replies for the first ``n`` commands (a lookup's HMGETs, row by row and entity
        set) where the cache has them fresh; the indices still to read (including every
        command past ``n``, e.g. the drift summary's GET); and the time the read is sent."""
        now = self.clock()
        replies: list[Any] = [None] * len(commands)
        todo: list[int] = []
        served = bounds.served
        k = len(served)
        rows = self._rows
        with self._lock:
            for j in range(n):
                fields = served[j % k]
                if fields is None:
                    todo.append(j)
                    continue
                key = commands[j][1]
                row = rows.get(key)
                if row is not None:
                    reply = []
                    for f, bound in fields:
                        held = row.get(f)
                        if held is None or now - held[1] > bound:
                            break
                        reply.append(held[0])
                    else:
                        replies[j] = reply
                        rows.move_to_end(key)
                        continue
                todo.append(j)
            self.hits += n - len(todo)
            self.misses += len(todo)
        todo.extend(range(n, len(commands)))
        return replies, todo, now

    def fill(
        self,
        replies: list[Any],
        todo: Sequence[int],
        fetched: Sequence[Any],
        commands: Sequence[tuple],
        bounds: PlanBounds,
        n: int,
        sent: int,
    ) -> list[Any]:
        """Put the store's replies (to ``commands[todo]``, read at ``sent``) into ``replies``
        and the cache; where the cache holds a value that must not be replaced (read later,
        or newer and within the bound), that value is the answer. Returns ``replies``."""
        now = self.clock()
        fills = bounds.fills
        k = len(fills)
        rows = self._rows
        with self._lock:
            for j, reply in zip(todo, fetched, strict=True):
                replies[j] = reply
                if j >= n:
                    continue
                cached = fills[j % k]
                if not cached:
                    continue
                key = commands[j][1]
                row = rows.get(key)
                if row is None:
                    row = rows[key] = {}
                    if len(rows) > self.max_entries:
                        self._evict()
                else:
                    rows.move_to_end(key)
                for pos, f, bound in cached:
                    raw = reply[pos]
                    held = row.get(f)
                    if held is not None and _keep(held, raw, sent, now, bound):
                        if not isinstance(reply, list):
                            reply = replies[j] = list(reply)
                        reply[pos] = held[0]
                        continue
                    row[f] = (raw, sent)
                    self._bytes += (len(raw) if raw else 0) - (len(held[0] or b"") if held else 0)
        return replies

    def _evict(self) -> None:
        _key, row = self._rows.popitem(last=False)
        self.evictions += 1
        self._bytes -= sum(len(raw) for raw, _ in row.values() if raw)

    def stats(self) -> dict[str, int]:
        """Entity keys held, the bytes of their values, hits, misses and evictions."""
        with self._lock:
            return {
                "entries": len(self._rows),
                "max_entries": self.max_entries,
                "value_bytes": self._bytes,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
            }

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._bytes = 0


def _keep(
    held: tuple[bytes | None, int], raw: bytes | None, sent: int, now: int, bound: int
) -> bool:
    """Whether the held value stays rather than a reply read at ``sent``: it came from a
    later read, or it is newer (event time) than the reply and still within the bound."""
    if held[1] > sent:
        return True
    value = held[0]
    if value is None or now - held[1] > bound:
        return False
    return raw is None or _event(value)[0] > _event(raw)[0]


def read_through(
    cache: LookupCache | None,
    plan: LookupPlan,
    commands: list[tuple],
    n: int,
    read: Callable[[list[tuple]], list[Any]],
) -> list[Any]:
    """A lookup's replies: from the cache where fresh, the rest with one ``read``."""
    bounds = cache.bounds(plan) if cache is not None else None
    if bounds is None:
        return read(commands)
    assert cache is not None
    replies, todo, sent = cache.answer(commands, bounds, n)
    if not todo:
        return replies
    fetched = read([commands[j] for j in todo])
    return cache.fill(replies, todo, fetched, commands, bounds, n, sent)


async def read_through_async(
    cache: LookupCache | None,
    plan: LookupPlan,
    commands: list[tuple],
    n: int,
    read: Callable[[list[tuple]], Any],
) -> list[Any]:
    """``read_through`` with an awaitable ``read``."""
    bounds = cache.bounds(plan) if cache is not None else None
    if bounds is None:
        return await read(commands)
    assert cache is not None
    replies, todo, sent = cache.answer(commands, bounds, n)
    if not todo:
        return replies
    fetched = await read([commands[j] for j in todo])
    return cache.fill(replies, todo, fetched, commands, bounds, n, sent)
