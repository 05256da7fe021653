"""Definitions written the way user repos write them, for mypy (scripts/test.sh).

Dtypes are spelled as strings and join keys and aggregation names are left to their
defaults; readers must still see the normalized types. Runtime: tests/test_typecheck.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import assert_type

from featurestore.definitions.aggregation import Aggregation
from featurestore.definitions.entity import Entity
from featurestore.definitions.field import Field
from featurestore.dtypes import DType, Float32

amount = Field(name="amount", dtype="float32")
score = Field(name="score", dtype=Float32)
user = Entity(name="user", dtype="int64")
clicks = Aggregation(function="count", window=timedelta(hours=1))

assert_type(amount.dtype, DType)
assert_type(score.dtype, DType)
assert_type(user.dtype, DType)
assert_type(user.join_key, str)
assert_type(clicks.name, str)
