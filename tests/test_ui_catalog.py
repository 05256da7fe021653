"""The catalog's search over the example repo's registry (no services): every filter
narrows, filters combine, words are all required, pages stay in range."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from featurestore import FeatureStore
from featurestore.ui.catalog import Entry, Query, build_index, facets, search
from tests.conftest import EXAMPLE_REPO


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Entry]]:
    repo = tmp_path_factory.mktemp("ui-catalog") / "feature_repo"
    shutil.copytree(
        EXAMPLE_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__", ".featurestore")
    )
    with FeatureStore(repo) as store:
        store.apply()
        yield build_index(store.snapshot())


def names(index: list[Entry], **query: str) -> list[str]:
    found = search(index, Query(**query), 0, limit=10_000)
    assert found["total"] == len(found["entries"])
    return [e.name for e in found["entries"]]


def test_an_empty_query_lists_everything_views_first(index: list[Entry]) -> None:
    every = names(index)
    assert len(every) == len(index)
    kinds = [e.kind for e in index]
    assert kinds[0] == "feature_view"
    assert kinds.index("feature") > kinds.index("feature_view")
    assert "user_profile:email" in every
    assert "fraud_detector" in every


def test_each_filter_narrows_and_filters_combine(index: list[Entry]) -> None:
    assert names(index, text="pii=true") == ["user_profile:email"]
    assert names(index, tag="pii=true") == ["user_profile:email"]
    risk = names(index, tag="team=risk")
    assert "user_profile" in risk
    assert "user_profile:email" in risk
    assert "merchant_stats" not in risk
    assert set(names(index, tag="team")) >= set(risk) | {"merchant_stats"}  # KEY alone: any value
    assert names(index, kind="model", purpose="fraud") == ["fraud_detector"]
    assert names(index, purpose="marketing") == ["promo_ranker"]
    owned = names(index, kind="feature_view", owner="risk-data@example.com")
    assert "user_profile" in owned
    assert "merchant_stats" not in owned
    both = names(index, kind="feature", tag="team=risk", text="email")
    assert both == ["user_profile:email"]
    assert names(index, entity="merchant", kind="feature_view") == ["merchant_stats"]


def test_every_word_must_match_in_any_case(index: list[Entry]) -> None:
    assert names(index, text="USER_PROFILE email") == ["user_profile:email"]
    assert names(index, text="email nosuchword") == []
    assert names(index, text="   ") == names(index)


def test_pages_stay_in_range(index: list[Entry]) -> None:
    total = len(index)
    first = search(index, Query(), 0, limit=5)
    assert (len(first["entries"]), first["total"], first["offset"]) == (5, total, 0)
    past = search(index, Query(), 10**6, limit=5)
    assert past["offset"] == total - 1
    assert len(past["entries"]) == 1
    none = search(index, Query(text="nosuchword"), 50)
    assert (none["entries"], none["total"], none["offset"]) == ([], 0, 0)


def test_facets_offer_what_the_filters_accept(index: list[Entry]) -> None:
    offered = facets(index)
    assert "pii=true" in offered["tags"]
    assert "team=risk" in offered["tags"]
    assert {"fraud", "marketing"} <= set(offered["purposes"])
    assert {"user", "merchant"} <= set(offered["entities"])
    assert offered["kinds"][0] == "feature_view"
