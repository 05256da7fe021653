"""The lineage, runs, training-set and audit pages in a real browser (the fixtures of
``test_ui_browser``): the graph is drawn and its nodes lead to their pages, the filters
are plain GET forms, and no page breaks the CSP (the ``page`` fixture fails on any
console error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.test_ui_browser import CHROMIUM, browser, log_in, page, shots  # noqa: F401
from tests.ui_repo import UiServer

pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]
MODEL = "fraud_detector"


def test_a_models_graph_is_drawn_and_its_nodes_lead_to_their_pages(
    page: Any,  # noqa: F811
    ui_server: UiServer,
    shots: Path,  # noqa: F811
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
    page.screenshot(path=str(shots / "lineage-model.png"), full_page=True)
    page.locator('[data-node^="run:"]').first.click()
    page.wait_for_url("**/ui/runs/*")
    assert page.locator("#sources tbody tr").count() >= 1
    page.screenshot(path=str(shots / "run.png"), full_page=True)


def test_the_runs_filter_and_the_audit_chain(
    page: Any,  # noqa: F811
    ui_server: UiServer,
    shots: Path,  # noqa: F811
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
    page.screenshot(path=str(shots / "audit.png"))
    page.goto(f"/ui/training-sets/{ui_server.world.training_set}")
    assert page.locator("#features tbody tr").count() > 5
    page.screenshot(path=str(shots / "training-set.png"), full_page=True)
