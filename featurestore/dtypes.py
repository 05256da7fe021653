"""Feature value types.

Names follow Feast (``Int64``, ``Float32``, ``String``, ``Array(Float32)``) so
Feast users recognise them. Strings such as ``"float64"`` or
``"array<float32>"`` are accepted wherever a dtype is, which keeps YAML and
JSON specs readable. Only float32 arrays are supported for now: they cover
embeddings, the one list type feature stores are asked for most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from featurestore.errors import InvalidDtypeError, did_you_mean

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True, slots=True)
class DType:
    """A feature value type. Compare by name; ``str()`` gives the canonical spelling."""

    name: str

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return _REPR.get(self.name, f"DType({self.name!r})")

    def arrow_type(self) -> pa.DataType:
        """The pyarrow type of this dtype (imports pyarrow on first use)."""
        import pyarrow as pa

        return {
            "int32": pa.int32(),
            "int64": pa.int64(),
            "float32": pa.float32(),
            "float64": pa.float64(),
            "string": pa.string(),
            "bytes": pa.binary(),
            "bool": pa.bool_(),
            "timestamp": pa.timestamp("us", tz="UTC"),
            "array<float32>": pa.list_(pa.float32()),
        }[self.name]


Int32 = DType("int32")
Int64 = DType("int64")
Float32 = DType("float32")
Float64 = DType("float64")
String = DType("string")
Bytes = DType("bytes")
Bool = DType("bool")
UnixTimestamp = DType("timestamp")
Timestamp = UnixTimestamp

_SCALARS = {d.name: d for d in (Int32, Int64, Float32, Float64, String, Bytes, Bool, UnixTimestamp)}
_ARRAY_ELEMENTS = {"float32"}
_REPR = {
    "int32": "Int32",
    "int64": "Int64",
    "float32": "Float32",
    "float64": "Float64",
    "string": "String",
    "bytes": "Bytes",
    "bool": "Bool",
    "timestamp": "UnixTimestamp",
    "array<float32>": "Array(Float32)",
}
# Common spellings from other tools, mapped to ours.
_ALIASES = {
    "int": "int64",
    "integer": "int64",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "str": "string",
    "boolean": "bool",
    "unix_timestamp": "timestamp",
    "datetime": "timestamp",
    "list<float32>": "array<float32>",
    "array[float32]": "array<float32>",
}
SUPPORTED = (*_SCALARS, "array<float32>")


def Array(element: DType) -> DType:
    """A list type; only ``Array(Float32)`` (embeddings) is supported."""
    if element.name not in _ARRAY_ELEMENTS:
        raise InvalidDtypeError(
            f"Array({element!r}) is not supported; only Array(Float32) is (for embeddings). "
            "Store other lists as a string or open an issue."
        )
    return DType(f"array<{element.name}>")


def parse_dtype(value: object, *, context: str = "dtype") -> DType:
    """Turn a DType or its spelling into a DType, or raise InvalidDtypeError naming ``context``."""
    if isinstance(value, DType):
        if value.name in SUPPORTED:
            return value
        raise InvalidDtypeError(f"{context}: unsupported dtype {value.name!r}.")
    if not isinstance(value, str):
        raise InvalidDtypeError(
            f"{context} must be a dtype such as Float64 or 'float64' "
            f"(got {value!r} that is a {type(value).__name__})."
        )
    key = value.strip().lower().replace(" ", "")
    key = _ALIASES.get(key, key)
    if key in _SCALARS:
        return _SCALARS[key]
    if key == "array<float32>":
        return DType(key)
    raise InvalidDtypeError(
        f"{context}: unknown dtype {value!r}.{did_you_mean(key, SUPPORTED)} "
        f"Supported: {', '.join(SUPPORTED)}."
    )
