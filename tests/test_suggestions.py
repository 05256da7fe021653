"""'Did you mean' among many names: bounded work, still the right suggestion."""

from __future__ import annotations

import difflib
from typing import Any

import pytest

from featurestore import errors
from featurestore.errors import SUGGEST_AMONG, did_you_mean


def test_a_suggestion_among_100000_names_compares_a_bounded_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A mistyped model name is an error any client can send; compared against each of a
    # registry's 100,000 models it cost seconds of CPU per request.
    compared: list[int] = []
    real = difflib.get_close_matches

    def counting(word: str, possibilities: Any, *args: Any, **kwargs: Any) -> list[str]:
        compared.append(len(possibilities))
        return real(word, possibilities, *args, **kwargs)

    monkeypatch.setattr(errors.difflib, "get_close_matches", counting)
    names = [f"model_{i}" for i in range(100_000)]
    assert did_you_mean("modle_77", names) == " Did you mean 'model_77'?"
    assert did_you_mean("mdoel_12345", names) == " Did you mean 'model_12345'?"
    assert did_you_mean("fraud_detector", names) == ""
    assert max(compared) <= SUGGEST_AMONG
    few = ["user_stats", "merchant_stats"]
    assert did_you_mean("user_stat", few) == " Did you mean 'user_stats'?"
