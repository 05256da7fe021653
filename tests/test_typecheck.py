"""The typed constructors (tests/typecheck) behave as their runtime normalization says."""

from featurestore.dtypes import Float32, Int64
from tests.typecheck import user_definitions as d


def test_string_spellings_are_normalized_to_what_the_types_promise():
    assert d.amount.dtype == Float32
    assert d.user.dtype == Int64
    assert d.user.join_key == "user"
    assert d.clicks.name == "count_1h"
