"""The web UI in a real browser: Debian's headless Chromium, driven by Playwright, against
``featurestore ui`` on loopback serving the example repo after materialization, a training
set and drift checks. Each page is screenshotted into ``FEATURESTORE_UI_SHOTS`` (default:
a temp folder; ``scripts/ui_screenshots.sh`` points it at docs/images/ui)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from featurestore import FeatureStore
from tests.ui_repo import UiServer

expect: Any = pytest.importorskip("playwright.sync_api").expect

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("FEATURESTORE_UI_SHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("ui-shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(browser: Any, ui_server: UiServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=ui_server.url)
    errors: list[str] = []
    tab = context.new_page()
    # A refused login answers 401/403, which the console reports as a failed load.
    tab.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab
    context.close()
    # A CSP violation or a script error is printed to the console: none is expected.
    assert errors == []


def log_in(page: Any, server: UiServer, path: str = "/ui/") -> None:
    page.goto(path)
    assert "/ui/login" in page.url  # nothing without a key
    page.fill("#key", server.world.operator_key)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}*")


def test_the_login_is_required_and_a_model_key_is_refused(
    page: Any, ui_server: UiServer, shots: Path
) -> None:
    page.goto("/ui/")
    assert "/ui/login" in page.url
    assert page.locator("#results").count() == 0
    page.screenshot(path=str(shots / "login.png"))
    page.fill("#key", ui_server.world.model_key)
    page.click("button[type=submit]")
    assert "the UI needs an operator" in page.inner_text("[role=alert]")
    cookies = page.context.cookies()
    assert cookies == []


def test_the_catalog_finds_a_feature_by_tag_as_you_type(
    page: Any, ui_server: UiServer, shots: Path
) -> None:
    log_in(page, ui_server)
    (cookie,) = page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    assert page.evaluate("document.cookie") == ""  # out of scripts' reach
    rows = page.locator("#results tbody tr")
    assert rows.count() > 10
    page.screenshot(path=str(shots / "catalog.png"), full_page=True)
    page.type("#q", "pii=true", delay=20)
    expect(rows).to_have_count(1)  # no string evaluation: the CSP forbids eval
    assert rows.first.locator("a").inner_text() == "user_profile:email"
    assert "q=pii%3Dtrue" in page.url  # the search is in the URL: linkable
    page.screenshot(path=str(shots / "catalog-search.png"))
    rows.first.locator("a").click()
    page.wait_for_url("**/ui/views/user_profile#f-email")


def test_from_fraud_detector_its_policies_drift_lineage_and_training_set_are_near(
    page: Any, ui_server: UiServer, shots: Path
) -> None:
    """The issue's walk: catalog -> the model (1 click); its policies and drift histograms
    are on that page; its lineage graph and its training set are one click further."""
    world = ui_server.world
    log_in(page, ui_server)
    page.type("#q", "fraud_detector", delay=10)
    model_link = page.locator("#results tbody tr a", has_text="fraud_detector").first
    expect(model_link).to_be_visible()
    model_link.click()  # click 1
    page.wait_for_url("**/ui/models/fraud_detector")
    decisions = page.locator("#policies [data-decision]")
    assert decisions.count() >= 5
    seen = {decisions.nth(i).get_attribute("data-decision") for i in range(decisions.count())}
    assert seen == {"allow"}  # the example repo masks nothing for fraud_detector
    assert world.model_key not in page.content()
    histograms = page.locator("#drift svg[data-histogram]")
    assert histograms.count() >= 1
    expect(histograms.first.locator(".bar-ref").first).to_be_visible()
    assert histograms.first.locator(".bar-served").count() >= 1
    page.screenshot(path=str(shots / "model.png"), full_page=True)
    histograms.first.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "model-drift.png"))

    page.click("#lineage-link")  # click 2: the graph
    page.wait_for_url("**/ui/lineage/model/fraud_detector")
    graph = page.locator("svg[data-graph=lineage]")
    expect(graph).to_be_visible()
    nodes = {n.get_attribute("data-node") for n in graph.locator("[data-node]").all()}
    assert "model:fraud_detector" in nodes
    assert f"training_set:{world.training_set}" in nodes
    assert any(n.startswith("view:user_profile@v") for n in nodes if n)
    edges = {e.get_attribute("data-edge") for e in graph.locator("[data-edge]").all()}
    assert f"training_set:{world.training_set}->model:fraud_detector" in edges
    page.screenshot(path=str(shots / "lineage.png"), full_page=True)

    page.go_back()
    page.click(f"#training-sets [data-training-set='{world.training_set}'] a")  # click 2
    page.wait_for_url(f"**/ui/training-sets/{world.training_set}")
    assert "fraud_detector" in page.inner_text("main")
    page.screenshot(path=str(shots / "training-set.png"), full_page=True)


def test_a_marketing_model_sees_the_rule_that_denies_it_pii(page: Any, ui_server: UiServer) -> None:
    log_in(page, ui_server, "/ui/models/promo_ranker")
    denied = page.locator("#policies [data-decision=deny]")
    expect(denied).to_have_count(1)
    assert denied.get_attribute("data-feature") == "user_profile@v1:email"
    assert denied.get_attribute("data-served") == "false"
    rule = denied.locator("[data-rule]")
    assert rule.get_attribute("data-rule") == "no_pii_for_marketing"
    rule.click()
    page.wait_for_url("**/ui/objects/policy/no_pii_for_marketing")
    assert "Marketing models never see personal data." in page.inner_text("main")


def test_a_view_its_runs_and_the_audit_log_render(
    page: Any, ui_server: UiServer, shots: Path
) -> None:
    log_in(page, ui_server, "/ui/views/user_profile")
    assert page.locator("#f-email").count() == 1
    assert page.locator("[data-run]").count() >= 1
    page.screenshot(path=str(shots / "view.png"), full_page=True)
    page.locator("[data-run] a").first.click()
    page.wait_for_url("**/ui/runs/*")
    assert "user_profile" in page.inner_text("main")
    page.goto("/ui/runs")
    with FeatureStore(ui_server.world.repo) as store:
        runs = store.registry.runs.records(store.project)
    shown = page.locator("#runs tr[data-run]")
    assert [int(r.get_attribute("data-run") or 0) for r in shown.all()] == [r.id for r in runs]
    page.screenshot(path=str(shots / "runs.png"), full_page=True)
    page.goto("/ui/audit")
    chain = page.locator("[data-chain]")
    assert chain.get_attribute("data-chain") == "verified"
    assert len(chain.get_attribute("data-head") or "") == 64
    assert page.locator("main table tbody tr").count() >= 3
    page.screenshot(path=str(shots / "audit.png"), full_page=True)


MODEL = "fraud_detector"


def test_a_models_graph_is_drawn_and_its_nodes_lead_to_their_pages(
    page: Any, ui_server: UiServer, shots: Path
) -> None:
    log_in(page, ui_server, f"/ui/lineage/model/{MODEL}")
    graph = page.locator("svg[data-graph=lineage]")
    box = graph.bounding_box()
    assert box is not None
    assert box["width"] > 600
    assert box["height"] > 100
    assert page.locator(f'[data-node="model:{MODEL}"]').is_visible()
    node = page.locator(f'[data-node="training_set:{ui_server.world.training_set}"] rect')
    assert node.evaluate("r => getComputedStyle(r).fill") != "rgb(0, 0, 0)"  # ui.css applies
    page.locator('[data-node^="run:"]').first.click()
    page.wait_for_url("**/ui/runs/*")
    assert page.locator("#sources tbody tr").count() >= 1
    page.screenshot(path=str(shots / "run.png"), full_page=True)


def test_the_runs_filter_is_a_get_form_and_a_training_set_lists_its_features(
    page: Any, ui_server: UiServer, shots: Path
) -> None:
    log_in(page, ui_server, "/ui/runs")
    page.select_option("#run-filters select[name=view]", "user_profile")
    page.click("#run-filters button[type=submit]")
    page.wait_for_url("**/ui/runs?view=user_profile*")
    views = page.locator("#runs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.view)")
    assert views
    assert set(views) == {"user_profile"}
    page.goto("/ui/audit")
    assert page.locator("#chain").get_attribute("data-chain") == "verified"
    page.goto(f"/ui/training-sets/{ui_server.world.training_set}")
    assert page.locator("#features tbody tr").count() > 5
