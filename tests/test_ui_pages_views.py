"""The feature view and model pages: what they show matches the registry (versions, schema
diffs, features, runs, pins, policy decisions, keys, training sets, drift), unknown names
are 404s, hostile text is escaped, secrets and masked values never appear, and pages
render with Redis down. Plus the histogram drawing, pure."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from featurestore import FeatureStore
from featurestore.policy.engine import policy_decisions
from featurestore.ui import pages_view
from featurestore.ui.app import standalone
from featurestore.ui.histogram import bin_labels, categorical_svg, numeric_svg
from tests.helpers import replace_in_file
from tests.ui_repo import UiRepo

HOSTILE = "<script>alert('view')</script>"
HOSTILE_FIELD = '<img src=x onerror="alert(1)">'
MASK_RULE = "mask_country_for_fraud"
EXTRA_CHECKS = 53
MERCHANT_V2 = (
    "category",
    "txn_count_30d",
    "avg_ticket_30d",
    "chargeback_rate_30d",
    "refund_rate_30d",
)


class Elements(HTMLParser):
    """Every start tag's attributes, in document order (for ``data-*`` and ``id`` hooks)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))


def elements(html: str, attr: str, value: str | None = None) -> list[dict[str, str]]:
    parser = Elements()
    parser.feed(html)
    return [a for _, a in parser.found if attr in a and (value is None or a[attr] == value)]


def alert(html: str) -> str:
    found = re.search(r'role="alert">([^<]*)<', html)
    return found.group(1).replace("&#39;", "'") if found else ""


@pytest.fixture(scope="module")
def world(ui_repo: UiRepo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    """A copy of the UI tests' repo (registry and offline data too), changed so the pages
    have more to show: merchant_stats gets a v2 (a feature added, a type changed) and a
    hostile description, and a policy masks user_profile:country for fraud_detector."""
    repo = tmp_path_factory.mktemp("ui-views") / "feature_repo"
    shutil.copytree(
        ui_repo.repo, repo, ignore=shutil.ignore_patterns("__pycache__", ".featurestore")
    )
    views = repo / "merchant_stats.py"
    replace_in_file(
        views,
        'Field(name="txn_count_30d", dtype=Int64),',
        'Field(name="txn_count_30d", dtype=Float64),\n        Field(name="refund_rate_30d", '
        f"dtype=Float64, description={HOSTILE_FIELD!r}),",
    )
    replace_in_file(
        views,
        "How a merchant's payments behaved over the last 30 days.",
        HOSTILE.replace("'", "\\'"),
    )
    replace_in_file(
        views,
        "merchant_stats = FeatureView(",
        "def clean_merchants(table):\n    return table  # shown on the page, as code\n\n\n"
        "merchant_stats = FeatureView(",
    )
    replace_in_file(
        views,
        "ttl=timedelta(days=7),",
        "transformation=clean_merchants,\n    ttl=timedelta(days=7),",
    )
    with (repo / "governance.py").open("a") as f:
        f.write(
            f"\n{MASK_RULE} = Policy(\n    name={MASK_RULE!r},\n    effect='mask',\n"
            "    features=FeatureMatch(views=['user_profile'], features=['country']),\n"
            "    models=ModelMatch(names=['fraud_detector']),\n)\n"
        )
    with FeatureStore(repo) as store:
        store.apply()
        revoked, _key = store.create_credential("fraud_detector", description=HOSTILE)
        store.registry.credentials.revoke(store.project, revoked.key_id, actor="tests")
        latest = store.registry.drift.checks(store.project, "fraud_detector", limit=1)[0]
        for _ in range(EXTRA_CHECKS):  # past a page of history (the same detail each time)
            store.registry.drift.record_check(
                store.project,
                "fraud_detector",
                latest.status,
                latest.training_set,
                latest.detail,
                latest.checked_at,
            )
        yield store


@pytest.fixture(scope="module")
def ui(world: FeatureStore, ui_repo: UiRepo) -> TestClient:
    return logged_in(world, ui_repo.operator_key)


def logged_in(store: FeatureStore, key: str) -> TestClient:
    c = TestClient(standalone(store, refresh_seconds=0.0), follow_redirects=False)
    assert c.post("/ui/login", data={"key": key, "next": "/ui/"}).status_code == 303
    return c


def page(ui: TestClient, path: str) -> str:
    answer = ui.get(path)
    assert answer.status_code == 200, (path, alert(answer.text) or answer.text[:500])
    return answer.text


# -- the feature view page ----------------------------------------------------------------


def test_every_view_page_lists_versions_features_and_runs(
    world: FeatureStore, ui: TestClient
) -> None:
    snapshot = world.snapshot()
    views = sorted(snapshot.active("feature_view"))
    assert {"user_profile", "user_txn_stats", "merchant_stats", "txn_amount_vs_1h"} <= set(views)
    ran = 0
    for view in views:
        html = page(ui, f"/ui/views/{view}")
        versions = snapshot.versions[view]
        rows = {
            a["data-version"]: a["data-status"]
            for a in elements(html, "data-status")
            if "data-version" in a
        }
        assert rows == {str(n): vv.status for n, vv in versions.items()}, view
        latest = snapshot.view_version(view)
        shown = [a["data-feature"] for a in elements(html, "data-feature") if "id" in a]
        assert shown == list(latest.feature_dtypes), view
        for feature in latest.feature_dtypes:
            assert f'id="f-{feature}"' in html
            assert elements(html, "href", f"/ui/lineage/feature/{view}:{feature}"), feature
        runs = world.registry.runs.records(world.project, view, limit=20)
        found = {a["data-run"]: a for a in elements(html, "data-run")}
        assert list(found) == [str(r.id) for r in runs], view
        for r in runs:
            assert elements(html, "href", f"/ui/runs/{r.id}")
        cells = {a["data-rows-offline"] for a in elements(html, "data-rows-offline")}
        assert {str(r.rows_offline) for r in runs if r.rows_offline is not None} <= cells
        read = [a["data-rows-read"] for a in elements(html, "data-rows-read")]
        assert read == ["" if r.rows_read is None else str(r.rows_read) for r in runs]
        ran += len(runs)
    assert ran, "the example repo was materialized: some view has runs"


def test_view_header_freshness_and_pins(world: FeatureStore, ui: TestClient) -> None:
    html = page(ui, "/ui/views/user_profile")
    assert elements(html, "data-entity", "user")[0]["href"] == "/ui/objects/entity/user"
    assert "90d" in html  # TTL
    assert "data/sources/user_profile" in html  # the source's path
    assert "between(age" in html  # an expectation
    fresh = elements(html, "data-offline-rows")
    rows = world.registry.runs.records(world.project, "user_profile")[0].rows_offline
    assert fresh
    assert int(fresh[0]["data-offline-rows"]) >= (rows or 1) > 0
    pinned = {a["data-model"] for a in elements(html, "data-model")}
    assert pinned == {"fraud_detector", "promo_ranker"}
    assert 'id="online-freshness"' in html
    stream = page(ui, "/ui/views/user_txn_stats")
    assert elements(stream, "data-kind", "streaming")
    assert "card_transactions" in stream
    assert "sum(amount) over 1h" in stream  # a window's aggregation, per feature
    on_demand = page(ui, "/ui/views/txn_amount_vs_1h")
    assert elements(on_demand, "data-kind", "on-demand")
    assert "def txn_amount_vs_1h" in on_demand  # its function's code, in a <pre>
    assert "user_txn_stats@v1:count_1h" in on_demand  # what it is computed from


def test_a_new_version_shows_its_schema_diff_and_v_selects(ui: TestClient) -> None:
    html = page(ui, "/ui/views/merchant_stats")
    statuses = {
        a["data-version"]: a["data-status"]
        for a in elements(html, "data-status")
        if "data-version" in a
    }
    assert statuses == {"1": "active", "2": "active"}  # v1 stays: models are pinned to it
    diff = {a["data-feature"]: a for a in elements(html, "data-change")}
    assert diff["refund_rate_30d"]["data-change"] == "add"
    assert "diff-add" in diff["refund_rate_30d"]["class"]
    assert diff["txn_count_30d"]["data-change"] == "chg"
    assert "diff-chg" in diff["txn_count_30d"]["class"]
    assert set(diff) == {"refund_rate_30d", "txn_count_30d"}
    assert 'id="f-refund_rate_30d"' in html  # the latest version by default
    v1 = page(ui, "/ui/views/merchant_stats?v=1")
    assert 'id="f-refund_rate_30d"' not in v1
    assert 'id="f-txn_count_30d"' in v1
    # fraud_features reads all of merchant_stats, so apply moved fraud_detector to v2 (v1
    # lacks the new feature); promo_ranker reads two old features and stays on v1.
    pins = {a["data-version"]: a["data-models"] for a in elements(v1, "data-models")}
    assert pins == {"1": "promo_ranker", "2": "fraud_detector"}


def test_a_transformation_is_shown_as_code(ui: TestClient) -> None:
    v2 = page(ui, "/ui/views/merchant_stats")
    code = re.search(r'<pre id="transformation">(.*?)</pre>', v2, re.S)
    assert code
    assert "def clean_merchants(table):" in code.group(1)
    v1 = page(ui, "/ui/views/merchant_stats?v=1")
    assert "clean_merchants" not in v1  # v1 has none


def test_run_validation_is_shown(world: FeatureStore, ui: TestClient) -> None:
    runs = world.registry.runs.records(world.project, "user_profile", limit=20)
    checked = [r for r in runs if r.validation]
    assert checked, "local materialization validates the batch"
    html = page(ui, "/ui/views/user_profile")
    expectations = len(checked[0].validation["expectations"])
    assert f"passed ({expectations}/{expectations} expectations)" in html


def test_unknown_views_and_versions_are_clear_errors(ui: TestClient) -> None:
    missing = ui.get("/ui/views/merchant_stats?v=99")
    assert missing.status_code == 404
    assert "no version v99" in alert(missing.text)
    assert "v1, v2" in alert(missing.text)
    assert ui.get("/ui/views/merchant_stats?v=two").status_code == 422
    unknown = ui.get("/ui/views/merchant_stat")
    assert unknown.status_code == 404
    assert "Did you mean 'merchant_stats'?" in alert(unknown.text)


def test_hostile_descriptions_come_out_as_text(ui: TestClient) -> None:
    html = page(ui, "/ui/views/merchant_stats")
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(&#39;view&#39;)&lt;/script&gt;" in html
    assert "<img" not in html
    assert "&lt;img src=x" in html


# -- the model page -------------------------------------------------------------------------


def test_model_page_shows_the_engines_decision_for_every_served_feature(
    world: FeatureStore, ui: TestClient
) -> None:
    snapshot = world.snapshot()
    resolved = snapshot.resolve_model("fraud_detector")
    decisions = policy_decisions(snapshot, "fraud_detector", resolved, world.config.policy_default)
    html = page(ui, "/ui/models/fraud_detector")
    policies = section(html, "policies")
    shown = {a["data-feature"]: a["data-decision"] for a in elements(policies, "data-decision")}
    assert shown == {str(r): d.effect for r, d in zip(resolved, decisions, strict=True)}
    assert shown["user_profile@v1:country"] == "mask"
    assert elements(policies, "href", f"/ui/objects/policy/{MASK_RULE}")
    assert set(shown.values()) == {"allow", "mask"}
    # A masked feature's values (its profile's categories) are not drawn.
    assert not elements(html, "data-histogram", "user_profile@v1:country")
    assert elements(html, "data-no-histogram", "user_profile@v1:country")
    drift = section(html, "drift")
    for country in ("DE", "FR", "GB"):
        assert f">{country}<" not in drift
        assert f"{country}: reference" not in drift
    assert elements(html, "id", "lineage-link")[0]["href"] == "/ui/lineage/model/fraud_detector"
    assert elements(html, "data-service", "fraud_features")[0]["href"] == (
        "/ui/objects/feature_service/fraud_features"
    )


def test_a_deny_on_a_feature_not_served_is_shown(ui: TestClient) -> None:
    html = section(page(ui, "/ui/models/promo_ranker"), "policies")
    email = elements(html, "data-feature", "user_profile@v1:email")
    assert email
    assert email[0]["data-decision"] == "deny"
    assert email[0]["data-served"] == "false"
    assert elements(html, "href", "/ui/objects/policy/no_pii_for_marketing")


def test_keys_are_listed_without_secrets(ui: TestClient, ui_repo: UiRepo) -> None:
    html = page(ui, "/ui/models/fraud_detector")
    _prefix, key_id, secret = ui_repo.model_key.split("_", 2)
    keys = elements(section(html, "keys"), "data-key")
    assert key_id in {a["data-key"] for a in keys}
    assert {a["data-status"] for a in keys if a["data-key"] == key_id} == {"active"}
    assert secret not in html
    assert ui_repo.operator_key.split("_", 2)[2] not in html
    assert ui_repo.operator_key.split("_", 2)[1] not in section(html, "keys")  # not this model's


def test_revoked_keys_show_as_revoked(world: FeatureStore, ui: TestClient) -> None:
    records = world.registry.credentials.records(world.project, "fraud_detector")
    revoked = [c for c in records if c.revoked_at is not None]
    assert revoked
    keys = section(page(ui, "/ui/models/fraud_detector"), "keys")
    shown = {a["data-key"]: a["data-status"] for a in elements(keys, "data-key")}
    assert shown == {c.key_id: ("revoked" if c.revoked_at else "active") for c in records}
    assert HOSTILE not in keys  # its description, escaped
    for c in records:
        assert c.secret_hash not in keys
        assert c.salt not in keys


def test_drift_history_is_paginated(world: FeatureStore, ui: TestClient) -> None:
    checks = world.registry.drift.checks(world.project, "fraud_detector", limit=None)
    assert len(checks) == 2 + EXTRA_CHECKS
    first = section(page(ui, "/ui/models/fraud_detector"), "drift-history")
    assert [a["data-check"] for a in elements(first, "data-check")] == [
        str(c.id) for c in checks[:50]
    ]
    assert elements(first, "href", "?offset=50#drift-history")
    second = section(page(ui, "/ui/models/fraud_detector?offset=50"), "drift-history")
    assert [a["data-check"] for a in elements(second, "data-check")] == [
        str(c.id) for c in checks[50:]
    ]
    assert elements(second, "href", "?offset=0#drift-history")
    assert not elements(second, "href", "?offset=100#drift-history")
    assert ui.get("/ui/models/fraud_detector?offset=x").status_code == 422


def test_training_sets_and_skew(world: FeatureStore, ui: TestClient, ui_repo: UiRepo) -> None:
    html = page(ui, "/ui/models/fraud_detector")
    sets = section(html, "training-sets")
    row = elements(sets, "data-training-set", str(ui_repo.training_set))
    assert row
    assert elements(sets, "href", f"/ui/training-sets/{ui_repo.training_set}")
    record = next(
        ts for ts in world.registry.training_sets(world.project) if ts.id == ui_repo.training_set
    )
    assert elements(sets, "data-rows", str(record.rows))
    assert record.fingerprint in sets
    skew = section(html, "skew")
    served = {a["data-serves"] for a in elements(skew, "data-serves")}
    assert served == {str(r) for r in world.snapshot().resolve_model("fraud_detector")}
    # It serves merchant_stats@v2 (see above) but was trained on v1: skew, per feature.
    skewed = {a["data-skew"]: a for a in elements(skew, "data-skew")}
    assert set(skewed) == {f"merchant_stats:{f}" for f in MERCHANT_V2}
    assert "merchant_stats@v1:category" in skew
    assert 'id="no-skew"' not in skew
    lineage = page(ui, "/ui/models/promo_ranker")
    assert "No training set recorded" in section(lineage, "skew")


def test_drift_histograms_match_the_profiles(world: FeatureStore, ui: TestClient) -> None:
    checks = world.registry.drift.checks(world.project, "fraud_detector", limit=None)
    assert len(checks) >= 2
    latest = checks[0]
    assert latest.training_set is not None
    profiles = world.registry.drift.profiles(world.project, latest.training_set)
    html = page(ui, "/ui/models/fraud_detector")
    drawn = 0
    for name, result in latest.detail["features"].items():
        label = result["reference"]
        svg = svg_of(html, label)
        if result["status"] in ("unknown", "no_reference") or name == "user_profile:country":
            assert svg is None, name
            continue
        profile = profiles[label]
        if profile["kind"] != "numeric":
            continue
        assert svg is not None, name
        tree = ET.fromstring(svg)  # well-formed SVG
        bars = [e for e in tree.iter() if e.get("class") == "bar-ref"]
        assert len(bars) == len(profile["fractions"]), name
        served = [e for e in tree.iter() if e.get("class") == "bar-served"]
        assert len(served) == len(result["served_fractions"]), name
        drawn += 1
    assert drawn, "some numeric feature of the check has a histogram"
    history = elements(section(html, "drift-history"), "data-check")
    assert [a["data-check"] for a in history] == [str(c.id) for c in checks[:50]]
    for c in checks[:50]:
        for n, f in c.detail["features"].items():
            if f["status"] in ("warn", "drift"):  # flagged features are named
                assert n in section(html, "drift-history")


def test_unknown_model_is_a_404_with_a_suggestion(ui: TestClient) -> None:
    answer = ui.get("/ui/models/fraud_detectr")
    assert answer.status_code == 404
    assert "Did you mean 'fraud_detector'?" in alert(answer.text)


def test_pages_render_with_redis_down(
    world: FeatureStore, ui_repo: UiRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", "redis://127.0.0.1:9/0")  # nothing listens
    with FeatureStore(world.config.repo_path) as store:
        c = logged_in(store, ui_repo.operator_key)
        for path in ("/ui/views/user_txn_stats", "/ui/models/fraud_detector"):
            assert c.get(path).status_code == 200, path


def section(html: str, ident: str) -> str:
    found = re.search(rf'<section id="{ident}">(.*?)</section>', html, re.S)
    assert found, ident
    return found.group(1)


def svg_of(html: str, label: str) -> str | None:
    found = re.search(rf'<svg[^>]*data-histogram="{re.escape(label)}".*?</svg>', html, re.S)
    return found.group(0) if found else None


# -- pure parts ----------------------------------------------------------------------------


def parse(svg: Any) -> ET.Element:
    return ET.fromstring(str(svg))


def bars(tree: ET.Element, cls: str) -> list[ET.Element]:
    return [e for e in tree.iter() if e.get("class") == cls]


def test_one_bin_histogram() -> None:
    tree = parse(numeric_svg("v@v1:x", [], [1.0], [1.0]))
    assert tree.get("data-histogram") == "v@v1:x"
    assert len(bars(tree, "bar-ref")) == len(bars(tree, "bar-served")) == 1
    assert bin_labels([]) == ["all values"]


def test_bins_are_labelled_and_titled_with_exact_shares() -> None:
    tree = parse(numeric_svg("f", [0, 10, 20], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]))
    ref = bars(tree, "bar-ref")
    assert len(ref) == 4
    titles = [e.findtext("{http://www.w3.org/2000/svg}title") for e in ref]
    assert titles == [
        "< 0: reference 10.0%",
        "[0, 10): reference 20.0%",
        "[10, 20): reference 30.0%",
        "≥ 20: reference 40.0%",
    ]
    heights = [float(e.get("height", "0")) for e in ref]
    assert heights == sorted(heights)
    assert heights[-1] > heights[0] > 0


def test_zero_fractions_draw_flat_bars_not_a_division_by_zero() -> None:
    tree = parse(numeric_svg("f", [1.5], [0.0, 0.0], [0.0, 0.0]))
    assert all(float(e.get("height", "1")) == 0.0 for e in tree.iter() if e.tag.endswith("rect"))


def test_fifty_categories_and_a_hostile_one() -> None:
    reference = {f"c{i:02d}": 1 / 51 for i in range(50)} | {"__other__": 1 / 51}
    reference["<b>x</b>"] = 0.0
    served = {"c00": 0.5, "new&value": 0.5}
    svg = str(categorical_svg("v@v1:<cat>", reference, served))
    assert "<b>" not in svg
    assert "<cat>" not in svg
    tree = parse(svg)
    assert len(bars(tree, "bar-ref")) == 53  # 51 named, one only served, and (other)
    assert len(bars(tree, "bar-served")) == 53
    labels = [e.text for e in tree.iter() if e.get("class") == "tick" and e.text]
    assert len(labels) <= 12 + 2  # every bin has a title; at most a dozen axis labels
    assert tree.get("data-histogram") == "v@v1:<cat>"  # escaped in the markup, exact parsed


def test_reference_only_histogram() -> None:
    tree = parse(categorical_svg("f", {"a": 0.7, "b": 0.3}))
    assert len(bars(tree, "bar-ref")) == 2
    assert not bars(tree, "bar-served")


def test_schema_diff() -> None:
    old = {"a": "int64", "b": "string", "c": "float64"}
    new = {"a": "float64", "c": "float64", "d": "bool"}
    assert pages_view.schema_diff(old, new) == [
        {"change": "chg", "feature": "a", "dtype": "float64", "was": "int64"},
        {"change": "add", "feature": "d", "dtype": "bool", "was": ""},
        {"change": "del", "feature": "b", "dtype": "", "was": "string"},
    ]
    assert pages_view.schema_diff(old, old) == []


def test_an_unmasked_categorical_feature_is_drawn(ui_repo: UiRepo) -> None:
    """In the repo as it was (no masking policy), user_profile:country has its histogram:
    what the masked world hides is there to hide."""
    with FeatureStore(ui_repo.repo) as store:
        check = store.registry.drift.checks(store.project, "fraud_detector", limit=1)[0]
        assert check.training_set is not None
        profile = store.registry.drift.profiles(store.project, check.training_set)[
            "user_profile@v1:country"
        ]
        html = page(logged_in(store, ui_repo.operator_key), "/ui/models/fraud_detector")
    svg = svg_of(html, "user_profile@v1:country")
    assert svg is not None
    assert len(bars(ET.fromstring(svg), "bar-ref")) == len(profile["categories"])


def test_a_streamed_views_offsets_and_newest_event(
    ui: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``offline_state`` says of a streamed table (offsets per partition, newest
    event) is shown; the stream itself is never asked (no Kafka call from a page)."""

    def streamed(_root: Path, _project: str, _view: str, _version: int) -> dict[str, Any]:
        return {
            "manifest": 7,
            "rows": 1234,
            "operation": "append",
            "committed_at": "2026-12-01T10:00:00+00:00",
            "stream": {
                "offsets": {"0": 41, "1": 17},
                "newest_event": datetime(2026, 12, 1, 9, 59, 58, tzinfo=UTC),
            },
        }

    monkeypatch.setattr(pages_view, "offline_state", streamed)
    html = page(ui, "/ui/views/user_txn_stats")
    fresh = re.search(r'<table class="list" id="freshness">(.*?)</table>', html, re.S)
    assert fresh
    assert elements(fresh.group(1), "data-offline-rows", "1234")
    assert "p0@41" in fresh.group(1)
    assert "p1@17" in fresh.group(1)
    assert "2026-12-01 09:59:58Z" in fresh.group(1)
