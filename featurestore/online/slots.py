"""A Redis Cluster's slot map: which primary serves each of the 16,384 hash slots.

Built from any node's ``CLUSTER SLOTS`` reply and patched by ``MOVED`` redirections
(``moved``) between refreshes. Keys hash as Redis hashes them (CRC16 of the key, or of its
``{tag}``); featurestore keys carry no tag, so a view's entities spread over every slot.

This module is on the online read path: standard library (and redis-py's CRC) only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = ["REDIS_CLUSTER_HASH_SLOTS", "Redirect", "SlotMap", "key_slot", "parse_redirect"]

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Redirect:
    """A ``MOVED`` (the slot lives elsewhere now) or ``ASK`` (ask there, this once) reply."""

    kind: str  # "MOVED" | "ASK"
    slot: int
    address: Address


def parse_redirect(message: str) -> Redirect | None:
    """The redirection an error reply's message names, or None for any other error."""
    kind, _, rest = message.partition(" ")
    if kind not in ("MOVED", "ASK"):
        return None
    slot, _, where = rest.partition(" ")
    host, _, port = where.rpartition(":")
    try:
        return Redirect(kind, int(slot), (host, int(port)))
    except ValueError:
        return None


class SlotMap:
    """slot -> primary address. Replaced whole on refresh; ``moved`` patches one slot."""

    def __init__(self, owners: list[Address | None], replicas: dict[Address, list[Address]]):
        self.owners = owners
        self.replicas = replicas

    @classmethod
    def from_reply(cls, reply: list[Any], asked: Address) -> SlotMap:
        """From ``CLUSTER SLOTS``: ``[[start, end, [host, port, id], replica...], ...]``. A
        node that does not know its own address answers "" for it: that is ``asked``."""
        owners: list[Address | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        replicas: dict[Address, list[Address]] = {}

        def address(node: list[Any]) -> Address:
            host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
            return (host or asked[0], int(node[1]))

        for entry in reply:
            start, end, primary = int(entry[0]), int(entry[1]), address(entry[2])
            owners[start : end + 1] = [primary] * (end - start + 1)
            replicas[primary] = [address(n) for n in entry[3:]]
        return cls(owners, replicas)

    @property
    def primaries(self) -> list[Address]:
        return sorted({a for a in self.owners if a is not None})

    @property
    def nodes(self) -> list[Address]:
        """Every node the map names: the primaries, then their replicas."""
        return self.primaries + [r for rs in self.replicas.values() for r in rs]

    def node_for(self, key: bytes | None) -> Address:
        """The primary serving ``key``'s slot (any primary for a keyless command)."""
        if key is None:
            return self.primaries[0]
        owner = self.owners[key_slot(key)]
        if owner is None:  # a slot no node serves (a failed node, not replaced yet)
            return random.choice(self.primaries)  # its answer (MOVED/CLUSTERDOWN) says more
        return owner

    def moved(self, redirect: Redirect) -> None:
        self.owners[redirect.slot] = redirect.address
