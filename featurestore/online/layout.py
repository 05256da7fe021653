"""Where a view version's values live in Redis, and how they are encoded.

One hash per entity key, shared by every view of the same entities::

    key    fs:<project>:<entity>[,<entity>...]:<key value>[,<key value>...]
    field  <view>@<version>
    value  16-byte header (event time, created time: big-endian int64 microseconds)
           + MessagePack array of the version's feature values, in schema order

A lookup of one entity for any number of views is one HMGET; the header lets
the write script compare event times without decoding the values, and lets a
reader check the TTL. Entity names are sorted, so views declared with
``[user, merchant]`` and ``[merchant, user]`` share keys. Why this layout is
documented with its measurements in ``docs/online-store.md``.

This module is on the online read path: standard library and msgpack only.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgpack

from featurestore.errors import EntityInputError
from featurestore.times import from_micros, micros

HEADER = struct.Struct(">qq")
HEADER_SIZE = HEADER.size
NO_CREATED = -(2**63)  # a row without created time loses every tie, as offline
_INT_RANGES = {"int64": (-(2**63), 2**63 - 1), "int32": (-(2**31), 2**31 - 1)}
KEY_DTYPES = ("int64", "int32", "string")


@dataclass(frozen=True, slots=True)
class ViewLayout:
    """What reading or writing one view version online needs. Plain data, so batch
    executors and stream consumers can receive it pickled."""

    project: str
    view: str
    version: int
    entity_names: tuple[str, ...]  # sorted
    join_keys: tuple[str, ...]  # in entity_names order
    key_dtypes: tuple[str, ...]
    features: tuple[str, ...]  # the version's whole schema, in order
    dtypes: tuple[str, ...]
    ttl_us: int | None

    @classmethod
    def from_view(cls, project: str, view: Any, version: int) -> ViewLayout:
        """From a FeatureView whose entities are resolved (``snapshot.feature_view``)."""
        entities = sorted(view.resolved_entities(), key=lambda e: e.name)
        ttl = view.ttl
        return cls(
            project=project,
            view=view.name,
            version=version,
            entity_names=tuple(e.name for e in entities),
            join_keys=tuple(e.join_key for e in entities),
            key_dtypes=tuple(str(e.dtype) for e in entities),
            features=tuple(f.name for f in view.schema),
            dtypes=tuple(str(f.dtype) for f in view.schema),
            ttl_us=None if ttl is None else ttl // timedelta(microseconds=1),
        )

    @classmethod
    def from_version(cls, snapshot: Any, vv: Any) -> ViewLayout:
        """From a registry ViewVersion, retired or not."""
        return cls.from_view(snapshot.project, snapshot.build_view(vv), vv.version)

    @property
    def prefix(self) -> bytes:
        return key_prefix(self.project, self.entity_names)

    @property
    def field(self) -> bytes:
        return f"{self.view}@{self.version}".encode()

    @property
    def label(self) -> str:
        return f"{self.view}@v{self.version}"


def key_prefix(project: str, entity_names: Sequence[str]) -> bytes:
    return f"fs:{project}:{','.join(entity_names)}:".encode()


# Drift's keys carry '@', which names cannot, so they never collide with entity keys.
def served_key(project: str, model: str) -> bytes:
    """The stream of a model's sampled lookups (see online/serving_log.py)."""
    return f"fs:{project}:@served:{model}".encode()


def drift_key(project: str, model: str) -> bytes:
    """A model's current drift summary (JSON), set by the monitor, read with lookups."""
    return f"fs:{project}:@drift:{model}".encode()


def drift_detail_key(project: str, model: str) -> bytes:
    """A model's last drift check in full (JSON): every feature's statistics."""
    return f"fs:{project}:@drift-detail:{model}".encode()


# -- entity keys ---------------------------------------------------------------


def key_part(dtype: str) -> Callable[[Any], str]:
    """Checks one key value against its entity's dtype and spells it for the key.

    Raises TypeError or ValueError with a short reason; callers add which key and row.
    """
    if dtype in _INT_RANGES:
        lo, hi = _INT_RANGES[dtype]

        def part(value: Any) -> str:
            if type(value) is not int:
                if isinstance(value, bool) or not hasattr(value, "__index__"):
                    raise TypeError(f"expected an integer ({dtype}), got {_shown(value)}")
                value = value.__index__()  # numpy integers
            if not lo <= value <= hi:
                raise ValueError(f"{value} is out of range for {dtype}")
            return str(value)

        return part
    if dtype == "string":

        def part(value: Any) -> str:
            if type(value) is not str:
                raise TypeError(f"expected a string, got {_shown(value)}")
            # ',' separates the parts of composite keys, '%' escapes.
            if "," in value or "%" in value:
                return value.replace("%", "%25").replace(",", "%2C")
            return value

        return part
    raise EntityInputError(
        f"Entity keys of dtype {dtype} cannot be served online; use one of {', '.join(KEY_DTYPES)}."
    )


def nested_kind(value: Any) -> str | None:
    """The type name of a container (list, dict...) where a scalar belongs, else None.

    Never looks inside: a hostile value may nest deeper than Python's recursion limit
    (repr() of it raises RecursionError).
    """
    if isinstance(value, list | tuple | dict | set | frozenset | Mapping):
        return type(value).__name__
    return None


def _shown(value: Any) -> str:
    kind = nested_kind(value)
    if kind is not None:
        return f"a {kind} of {len(value)} item(s)"
    text = repr(value)
    return (
        f"{text[:40]}... ({type(value).__name__})"
        if len(text) > 40
        else (f"{text} ({type(value).__name__})")
    )


# -- values ----------------------------------------------------------------------


def value_encoder(dtypes: Sequence[str]) -> Callable[[Sequence[Any]], list[Any]]:
    """Turns one row of feature values into what MessagePack stores."""
    converters = [(i, _ENCODE[d]) for i, d in enumerate(dtypes) if d in _ENCODE]

    def encode(values: Sequence[Any]) -> list[Any]:
        out = list(values)
        for i, convert in converters:
            if out[i] is not None:
                out[i] = convert(out[i])
        return out

    return encode


def encode_value(event_us: int, created_us: int | None, values: list[Any]) -> bytes:
    header = HEADER.pack(event_us, NO_CREATED if created_us is None else created_us)
    return header + msgpack.packb(values, use_bin_type=True)


def value_decoders(dtypes: Sequence[str]) -> list[tuple[int, Callable[[Any], Any]]]:
    """(position, converter) for the dtypes MessagePack does not give back as they are."""
    return [(i, _DECODE[d]) for i, d in enumerate(dtypes) if d in _DECODE]


def _encode_timestamp(value: Any) -> int:
    if isinstance(value, datetime):
        return micros(value)
    if type(value) is int:
        return value
    raise TypeError(f"expected a datetime or epoch microseconds, got {_shown(value)}")


def _encode_f32_array(value: Any) -> bytes:
    return array("f", value).tobytes()


def _decode_f32_array(value: bytes) -> list[float]:
    return array("f", value).tolist()


_ENCODE: dict[str, Callable[[Any], Any]] = {
    "timestamp": _encode_timestamp,
    "array<float32>": _encode_f32_array,
}
_DECODE: dict[str, Callable[[Any], Any]] = {
    "timestamp": from_micros,
    "array<float32>": _decode_f32_array,
}
