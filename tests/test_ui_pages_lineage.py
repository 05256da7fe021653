"""The UI's lineage, runs, training-set and audit pages on the materialized example repo
(``ui_repo``): graphs whose nodes and edges are the registry's facts, lists that match the
registry's records and filter them, 404s for what does not exist, a tampered audit chain
shown broken, and no secret on any page. Plus the graph layout on its own."""

from __future__ import annotations

import html
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from featurestore import FeatureStore
from featurestore.registry import schema as t
from featurestore.registry.audit import AuditRecord
from featurestore.registry.runs import RunRecord
from featurestore.registry.store import Registry, TrainingSetRecord
from featurestore.times import now_utc
from featurestore.ui.app import standalone
from featurestore.ui.graph import NODE_HEIGHT, NODE_WIDTH, Graph, Node, layers, layout, svg
from featurestore.ui.pages_lineage import LineageGraph
from featurestore.ui.render import Renderer
from tests.ui_repo import UiRepo

MODEL = "fraud_detector"
SECRET = "hunter2-not-shown"


def login(store: FeatureStore, key: str) -> TestClient:
    c = TestClient(standalone(store, refresh_seconds=0.0), follow_redirects=False)
    answer = c.post("/ui/login", data={"key": key, "next": "/ui/"})
    assert answer.status_code == 303, answer.text
    return c


@pytest.fixture(scope="module")
def store(ui_repo: UiRepo) -> Iterator[FeatureStore]:
    with FeatureStore(ui_repo.repo) as fs:
        yield fs


@pytest.fixture(scope="module")
def ui(store: FeatureStore, ui_repo: UiRepo) -> TestClient:
    return login(store, ui_repo.operator_key)


def page(ui: TestClient, path: str, status: int = 200) -> str:
    answer = ui.get(path)
    assert answer.status_code == status, (path, answer.status_code, answer.text[:400])
    return answer.text


def attrs(text: str, name: str) -> list[str]:
    """Every value of the attribute ``name`` in the page, unescaped."""
    return [html.unescape(v) for v in re.findall(rf'\s{name}="([^"]*)"', text)]


def graph_of(text: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """The page's lineage SVG: ``{node: href}`` and the ``(from, to)`` edges."""
    found = re.search(r'<svg data-graph="lineage".*?</svg>', text, re.S)
    assert found, "no lineage graph on the page"
    graph = found.group(0)
    nodes = {
        html.unescape(key): html.unescape(href)
        for href, key in re.findall(
            r'<a href="([^"]*)"><g class="node [^"]*" data-node="([^"]*)"', graph
        )
    }
    assert len(nodes) == len(attrs(graph, "data-node")), "every node is a link"
    edges = {tuple(e.split("->", 1)) for e in attrs(graph, "data-edge")}
    return nodes, edges  # type: ignore[return-value]


def rows(text: str, table: str) -> str:
    found = re.search(rf'<table class="list" id="{table}">.*?</table>', text, re.S)
    assert found, f"no table #{table}"
    return found.group(0)


# -- the lineage graphs --------------------------------------------------------


def test_a_models_graph_has_its_sources_runs_versions_training_set_and_edges(
    ui: TestClient, store: FeatureStore, ui_repo: UiRepo
) -> None:
    text = page(ui, f"/ui/lineage/model/{MODEL}")
    nodes, edges = graph_of(text)
    snapshot = store.snapshot()
    served = {f"{r.view}@v{r.version}" for r in snapshot.resolve_model(MODEL)}
    assert len(served) == 4
    model, ts = f"model:{MODEL}", f"training_set:{ui_repo.training_set}"
    assert nodes[model] == f"/ui/models/{MODEL}"
    assert nodes[ts] == f"/ui/training-sets/{ui_repo.training_set}"
    assert (ts, model) in edges  # trained
    record = store.registry.training_set(store.project, ui_repo.training_set)
    read = {f.split(":")[0] for f in record.features}
    assert read == served
    for version in served:
        assert nodes[f"view:{version}"] == f"/ui/views/{version.split('@')[0]}"
        assert (f"view:{version}", model) in edges  # served
        assert (f"view:{version}", ts) in edges  # read by the training set
    # The last successful run of each materialized version wrote it.
    for run in store.registry.runs.records(store.project, status="succeeded"):
        key = f"run:{run.id}"
        assert nodes[key] == f"/ui/runs/{run.id}"
        assert (key, f"view:{run.label}") in edges
    assert ("source:user_profile_source", "view:user_profile@v1") in edges
    assert nodes["source:user_profile_source"] == "/ui/objects/source/user_profile_source"
    assert ("source:transactions_stream", "view:user_txn_stats@v1") in edges
    assert ("source:transactions_log", "view:user_txn_stats@v1") in edges  # its history
    # The on-demand view computes from the stored view it reads.
    assert ("view:user_txn_stats@v1", "view:txn_amount_vs_1h@v1") in edges
    assert {k.split(":")[0] for k in nodes} == {"source", "run", "view", "training_set", "model"}
    assert all(a in nodes and b in nodes for a, b in edges)


def test_a_models_tables_list_what_it_serves_with_decisions_and_no_skew(
    ui: TestClient, store: FeatureStore
) -> None:
    text = page(ui, f"/ui/lineage/model/{MODEL}")
    serves = rows(text, "serves")
    expected = [str(r) for r in store.snapshot().resolve_model(MODEL)]
    assert attrs(serves, "data-feature") == expected
    assert set(attrs(serves, "data-decision")) == {"allow"}
    assert "/ui/lineage/feature/user_profile@v1:age" in serves
    assert 'data-skew="none"' in text  # it serves what it was trained on
    assert 'data-drift="warn"' in text  # the newer of the fixture's two checks
    assert "/ui/lineage/model/nope" not in text


def test_a_features_graph_has_its_versions_runs_training_sets_and_models(
    ui: TestClient, store: FeatureStore, ui_repo: UiRepo
) -> None:
    for ref in ("user_profile:age", "user_profile@v1:age"):
        text = page(ui, f"/ui/lineage/feature/{ref}")
        nodes, edges = graph_of(text)
        feature, version = "feature:user_profile:age", "view:user_profile@v1"
        assert nodes[feature] == "/ui/views/user_profile#f-age"
        assert (version, feature) in edges
        assert ("source:user_profile_source", version) in edges
        (run,) = store.registry.runs.records(store.project, "user_profile")
        assert (f"run:{run.id}", version) in edges
        assert (version, f"training_set:{ui_repo.training_set}") in edges
        assert (f"training_set:{ui_repo.training_set}", f"model:{MODEL}") in edges
        assert (version, f"model:{MODEL}") in edges
        assert (version, "model:promo_ranker") in edges  # served, never trained on
        assert (f"training_set:{ui_repo.training_set}", "model:promo_ranker") not in edges
        assert attrs(rows(text, "versions"), "data-version") == ["1"]
        assert attrs(rows(text, "models"), "data-model") == [MODEL, "promo_ranker"]
    nodes, _ = graph_of(page(ui, "/ui/lineage/feature/user_profile:credit_limit"))
    assert f"model:{MODEL}" in nodes
    assert "model:promo_ranker" not in nodes  # its service does not read credit_limit


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/ui/lineage/model/fraud_detectr", 404, "fraud_detector"),  # with a suggestion
        ("/ui/lineage/feature/user_profile:agee", 404, "age"),
        ("/ui/lineage/feature/no_such_view:age", 404, "no_such_view"),
        ("/ui/lineage/feature/user_profile@v9:age", 404, "v9"),
        ("/ui/lineage/feature/not-a-reference", 400, "Cannot parse"),
        ("/ui/runs/999999", 404, "No materialization run #999999"),
        ("/ui/runs/abc", 404, "whole numbers"),
        ("/ui/training-sets/999999", 404, "No training set #999999"),
        ("/ui/runs?status=finished", 422, "not a run status"),
        ("/ui/audit?offset=-1", 422, "out of range"),
    ],
)
def test_unknown_objects_and_bad_parameters_are_clear_errors(
    ui: TestClient, path: str, status: int, says: str
) -> None:
    text = page(ui, path, status)
    alert = re.search(r'role="alert">([^<]*)<', text)
    assert alert
    assert says in html.unescape(alert.group(1))


# -- runs and training sets ----------------------------------------------------


def test_the_runs_list_shows_the_registrys_runs_and_counts_and_filters_narrow_it(
    ui: TestClient, store: FeatureStore
) -> None:
    recorded = store.registry.runs.records(store.project)
    assert len(recorded) >= 2
    table = rows(page(ui, "/ui/runs"), "runs")
    assert attrs(table, "data-run") == [str(r.id) for r in recorded]  # newest first
    assert attrs(table, "data-rows-read") == [str(r.rows_read) for r in recorded]
    assert attrs(table, "data-rows-offline") == [str(r.rows_offline) for r in recorded]
    assert attrs(table, "data-rows-online") == [str(r.rows_online) for r in recorded]
    only = rows(page(ui, "/ui/runs?view=user_profile"), "runs")
    assert set(attrs(only, "data-view")) == {"user_profile"}
    assert len(attrs(only, "data-run")) == len([r for r in recorded if r.view == "user_profile"])
    assert attrs(rows(page(ui, "/ui/runs?status=failed"), "runs"), "data-run") == []
    engine = recorded[0].engine or ""
    by_engine = rows(page(ui, f"/ui/runs?engine={engine}"), "runs")
    assert len(attrs(by_engine, "data-run")) == len([r for r in recorded if r.engine == engine])
    assert attrs(rows(page(ui, "/ui/runs?engine=spark-nowhere"), "runs"), "data-run") == []


def test_a_runs_page_shows_its_inputs_validation_and_counts(
    ui: TestClient, store: FeatureStore
) -> None:
    (run,) = store.registry.runs.records(store.project, "user_profile")
    text = page(ui, f"/ui/runs/{run.id}")
    sources = attrs(rows(text, "sources"), "data-source")
    assert sources == [s["path"] for s in run.sources]
    assert len(sources) >= 1
    assert f'data-rows-read="{run.rows_read}"' in text
    assert f'data-manifest="{run.offline_manifest}"' in text
    assert run.validation is not None
    assert 'data-validation="passed"' in text
    listed = attrs(rows(text, "expectations"), "data-expectation")
    assert listed == [e["expectation"] for e in run.validation["expectations"]]
    assert 'href="/ui/views/user_profile"' in text


def test_the_training_sets_list_filters_by_model_and_a_detail_lists_features_and_fingerprint(
    ui: TestClient, store: FeatureStore, ui_repo: UiRepo
) -> None:
    listed = rows(page(ui, "/ui/training-sets"), "training-sets")
    assert str(ui_repo.training_set) in attrs(listed, "data-training-set")
    mine = rows(page(ui, f"/ui/training-sets?model={MODEL}"), "training-sets")
    assert set(attrs(mine, "data-model")) == {MODEL}
    other = rows(page(ui, "/ui/training-sets?model=promo_ranker"), "training-sets")
    assert attrs(other, "data-training-set") == []
    record = store.registry.training_set(store.project, ui_repo.training_set)
    text = page(ui, f"/ui/training-sets/{ui_repo.training_set}")
    features = rows(text, "features")
    assert attrs(features, "data-feature") == list(record.features)
    assert 'href="/ui/views/user_profile#f-age"' in features
    profiles = store.registry.drift.profiles(store.project, ui_repo.training_set)
    assert attrs(features, "data-profile") == [profiles[f]["kind"] for f in record.features]
    assert record.fingerprint
    assert f'data-fingerprint="{record.fingerprint}"' in text
    inputs = attrs(rows(text, "inputs"), "data-input")
    assert inputs == sorted(record.offline_manifests)
    assert f'href="/ui/models/{MODEL}"' in text


# -- the audit log -------------------------------------------------------------


def test_the_audit_page_shows_the_verified_chain_and_filters_by_actor(
    ui: TestClient, store: FeatureStore
) -> None:
    text = page(ui, "/ui/audit")
    log = store.registry.audit
    result = log.verify(store.project)
    assert result.ok
    assert 'data-chain="verified"' in text
    (head,) = attrs(text, "data-head")
    assert head == result.head == log.records(store.project, limit=1)[0].hash
    assert attrs(text, "data-records") == [str(result.records)]
    shown = attrs(rows(text, "audit"), "data-seq")
    assert shown == [str(r.seq) for r in log.records(store.project, limit=50)]
    everyone = set(attrs(rows(text, "audit"), "data-actor"))
    assert {"root"} < everyone  # the fixture's writes, and this client's logins
    only = rows(page(ui, "/ui/audit?actor=root"), "audit")
    assert set(attrs(only, "data-actor")) == {"root"}
    assert len(attrs(only, "data-seq")) == log.count(store.project, actor="root") < len(shown)
    builds = rows(page(ui, f"/ui/audit?action=training_set&object={MODEL}"), "audit")
    assert set(attrs(builds, "data-action")) == {"training_set"}
    assert attrs(builds, "data-decision") == ["allow"]


def test_a_tampered_audit_chain_is_shown_broken(
    ui_repo: UiRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit shows once the last check is older than CHAIN_MAX_AGE (the check reads the
    whole log, so it is not run on every load), and the page says when it was checked."""
    from featurestore.ui import pages_audit

    copy = tmp_path / "repo"
    shutil.copytree(ui_repo.repo, copy)  # never the shared fixture's registry
    with FeatureStore(copy) as fs:
        (build,) = fs.registry.audit.records(fs.project, action="training_set")
        database = fs.config.registry_url.removeprefix("sqlite:///")
        assert database.startswith(str(copy))
        client = login(fs, ui_repo.operator_key)
        before = page(client, "/ui/audit")
        assert 'data-chain="verified"' in before
        with sqlite3.connect(database) as db:  # an insider edits what a build recorded
            db.execute(
                f"UPDATE {t.audit.name} SET detail = ? WHERE project = ? AND seq = ?",
                ('{"masked": []}', ui_repo.project, build.seq),
            )
        checked = re.compile(r'id="checked-at">([^<]+)<')
        again = page(client, "/ui/audit")  # within CHAIN_MAX_AGE: the last check stands
        assert 'data-chain="verified"' in again
        assert checked.findall(again) == checked.findall(before)
        monkeypatch.setattr(pages_audit, "CHAIN_MAX_AGE", 0.0)
        text = page(client, "/ui/audit")
        assert not fs.registry.audit.verify(fs.project).ok
    assert 'data-chain="broken"' in text
    assert f'data-first-broken="{build.seq}"' in text
    assert f"record {build.seq} was changed after it was written" in text
    assert re.search(rf'data-seq="{build.seq}"[^>]*data-broken="true"', text)


# -- secrets and hostile input -------------------------------------------------


def test_no_page_shows_a_secret_and_hostile_parameters_are_text(
    ui: TestClient, ui_repo: UiRepo
) -> None:
    paths = [
        f"/ui/lineage/model/{MODEL}",
        "/ui/lineage/feature/user_profile:email",
        "/ui/runs",
        "/ui/training-sets",
        f"/ui/training-sets/{ui_repo.training_set}",
        "/ui/audit",
    ]
    run = re.search(r'data-run="(\d+)"', page(ui, "/ui/runs"))
    assert run
    paths.append(f"/ui/runs/{run.group(1)}")
    for path in paths:
        text = page(ui, path)
        for key in (ui_repo.operator_key, ui_repo.model_key):
            assert key.split("_", 2)[2] not in text, path
    hostile = "<script>alert(1)</script>"
    for path in ("/ui/runs?view=", "/ui/audit?object=", "/ui/training-sets?model="):
        text = page(ui, path + hostile)
        assert hostile not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


# -- the registry's filters the pages use ----------------------------------------


def test_run_and_audit_logs_filter_count_and_page(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path}/registry.db")
    for view, engine, status in [("a", "x", "succeeded"), ("b", "y", "failed"), ("a", "y", "")]:
        run = RunRecord("p", view, 1, None, now_utc(), engine=engine)
        registry.runs.start(run)
        if status:
            registry.runs.finish(run, status)
        registry.audit.append(AuditRecord("p", "apply", actor=f"by-{view}", subject=engine))
    runs = registry.runs
    assert [r.view for r in runs.records("p")] == ["a", "b", "a"]
    assert [r.id for r in runs.records("p", "a", engine="y")] == [3]
    assert [r.id for r in runs.records("p", status="failed")] == [2]
    assert [r.id for r in runs.records("p", limit=1, offset=1)] == [2]
    assert (runs.count("p"), runs.count("p", "a"), runs.count("p", status="running")) == (3, 2, 1)
    assert runs.record("p", 2).status == "failed"
    with pytest.raises(Exception, match="No materialization run #9"):
        runs.record("p", 9)
    assert runs.records("q") == []
    assert runs.engines("p") == ["x", "y"]
    audit = registry.audit
    assert [r.seq for r in audit.records("p", actor="by-a")] == [3, 1]
    assert [r.seq for r in audit.records("p", limit=1, offset=1)] == [2]
    assert audit.count("p", actor="by-a", subject="y") == 1
    for model in ("m", None, "m"):
        registry.record_training_set(
            TrainingSetRecord("p", model, ("v@v1:f",), "e", 1, 1, "x", None, {})
        )
    assert [b.id for b in registry.training_sets("p", "m", limit=1, offset=1)] == [1]
    assert [b.id for b in registry.training_sets("p", limit=2)] == [3, 2]
    assert (registry.training_set_count("p"), registry.training_set_count("p", "m")) == (3, 2)
    assert audit.choices("p") == {"actions": ["apply"], "actors": ["by-a", "by-b"]}
    result = audit.verify("p")
    assert result.ok
    assert result.first_broken is None
    assert result.head == audit.records("p", limit=1)[0].hash
    registry.close()


# -- the layout on its own -----------------------------------------------------


def sample_graph(hostile: str = "") -> Graph:
    g = Graph()
    for kind, ident in [
        ("model", "m"),
        ("training_set", "7"),
        ("view", "v@v1"),
        ("view", "w@v2"),
        ("view", "od@v1"),
        ("run", "3"),
        ("source", "s"),
        ("source", "t" * 60),
        ("feature", hostile or "v:f"),
    ]:
        g.add(Node(kind, ident, ident, f"/ui/x/{ident}"))
    for a, b in [
        ("source:s", "view:v@v1"),
        (f"source:{'t' * 60}", "view:w@v2"),
        ("run:3", "view:v@v1"),
        ("view:v@v1", "view:od@v1"),  # an on-demand view reads another view
        ("view:v@v1", "training_set:7"),
        ("view:w@v2", "training_set:7"),
        ("training_set:7", "model:m"),
        ("view:od@v1", "model:m"),
        ("view:v@v1", "model:m"),
        ("source:s", f"feature:{hostile or 'v:f'}"),
        ("view:v@v1", "view:nowhere@v1"),  # an end not in the graph: no edge
    ]:
        g.link(a, b)
    return g


def test_the_layout_flows_left_to_right_without_overlaps() -> None:
    g = sample_graph()
    assert ("view:v@v1", "view:nowhere@v1") not in g.edges
    found = layout(g)
    assert set(found.boxes) == set(g.nodes)
    assert set(found.edges) == set(g.edges)
    boxes = list(found.boxes.values())
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            apart_x = a.x + NODE_WIDTH <= b.x or b.x + NODE_WIDTH <= a.x
            apart_y = a.y + NODE_HEIGHT <= b.y or b.y + NODE_HEIGHT <= a.y
            assert apart_x or apart_y, (a.node.key, b.node.key)
        assert a.x >= 0
        assert a.x + NODE_WIDTH <= found.width
        assert a.y >= 0
        assert a.y + NODE_HEIGHT <= found.height
    for (a, b), way in found.edges.items():
        assert found.boxes[a].x < found.boxes[b].x, (a, b)  # every edge goes right
        for x, y in way:  # a lane crosses a layer beside its nodes, never through one
            for box in boxes:
                inside = box.x <= x < box.x + NODE_WIDTH and box.y <= y <= box.y + NODE_HEIGHT
                assert not inside, (a, b, box.node.key)
    layer = layers(g)
    assert layer["source:s"] < layer["run:3"] < layer["view:v@v1"] < layer["view:od@v1"]
    assert layer["view:od@v1"] < layer["training_set:7"] < layer["model:m"]
    assert layout(sample_graph()) == found  # the same graph, the same picture


def test_the_svg_links_nodes_escapes_names_and_truncates_long_ones() -> None:
    hostile = 'v:<script>"&'
    text = str(svg(layout(sample_graph(hostile))))
    assert text.startswith('<svg data-graph="lineage"')
    assert "<script>" not in text
    nodes, edges = graph_of(text)
    assert f"feature:{hostile}" in nodes
    assert ("source:s", f"feature:{hostile}") in edges
    assert nodes["model:m"] == "/ui/x/m"
    long = "t" * 60
    assert f"<title>{long}</title>" in text  # the whole name on hover
    assert f">{long}<" not in text.replace(f"<title>{long}</title>", "")
    assert "…</text>" in text
    assert len(re.findall(r'<path class="edge"', text)) == len(edges) == 10


# -- a busy registry: graphs cap what they draw, lists page ------------------------


@pytest.fixture(scope="module")
def busy(
    ui_repo: UiRepo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, FeatureStore]]:
    """A copy of the repo with 60 more runs of user_profile@v1 and 10 more builds."""
    from dataclasses import replace

    copy = tmp_path_factory.mktemp("busy") / "repo"
    shutil.copytree(ui_repo.repo, copy)
    with FeatureStore(copy) as fs:
        template = fs.registry.training_set(fs.project, ui_repo.training_set)
        for i in range(60):
            run = RunRecord(fs.project, "user_profile", 1, None, now_utc(), engine="busy")
            run.rows_read = i
            run.sources = [{"path": f"s3://reader:{SECRET}@bucket/part-{i}.parquet"}]
            fs.registry.runs.start(run)
            failed = i % 2 == 1
            error = f"cannot reach redis://:{SECRET}@cache:6379/0" if failed else None
            fs.registry.runs.finish(run, "failed" if failed else "succeeded", error)
        for _ in range(9):
            fs.registry.record_training_set(replace(template, id=None))
        # The newest build read another version of age and not category: version skew.
        features = [
            f.replace("user_profile@v1:age", "user_profile@v2:age")
            for f in template.features
            if f != "merchant_stats@v1:category"
        ]
        fs.registry.record_training_set(replace(template, id=None, features=tuple(features)))
        yield login(fs, ui_repo.operator_key), fs


def test_graphs_draw_a_few_runs_and_training_sets_and_count_the_rest(
    busy: tuple[TestClient, FeatureStore],
) -> None:
    ui, store = busy
    nodes, edges = graph_of(page(ui, "/ui/lineage/feature/user_profile:age"))
    runs = [k for k in nodes if k.startswith("run:") and "more" not in k]
    assert len(runs) == 3  # the newest of 61
    assert nodes["run:more:v1"] == "/ui/runs?view=user_profile"
    assert ("run:more:v1", "view:user_profile@v1") in edges
    assert len([k for k in nodes if k.startswith("training_set:")]) == 8 + 1
    text = page(ui, f"/ui/lineage/model/{MODEL}")
    nodes, edges = graph_of(text)
    assert len([k for k in nodes if k.startswith("training_set:")]) == 8 + 1
    assert nodes["training_set:more:"] == f"/ui/training-sets?model={MODEL}"
    assert ">+3 more training sets<" in text
    # The model's graph has the last successful run of each version, not all of them.
    newest = store.registry.runs.records(store.project, "user_profile", status="succeeded")[0]
    assert [a for a, b in edges if b == "view:user_profile@v1" and a.startswith("run:")] == [
        f"run:{newest.id}"
    ]
    assert len(attrs(rows(text, "training-sets"), "data-training-set")) == 11
    listed = page(ui, f"/ui/training-sets?model={MODEL}&offset=10")
    assert 'data-total="11"' in listed
    first = store.registry.training_sets(store.project, MODEL)[-1]
    assert attrs(rows(listed, "training-sets"), "data-training-set") == [str(first.id)]


def test_the_runs_list_pages_by_fifty(busy: tuple[TestClient, FeatureStore]) -> None:
    ui = busy[0]
    first = page(ui, "/ui/runs?engine=busy")
    assert 'data-total="60"' in first
    assert len(attrs(rows(first, "runs"), "data-run")) == 50
    assert "engine=busy&amp;offset=50" in first  # the next page keeps the filter
    second = rows(page(ui, "/ui/runs?engine=busy&offset=50"), "runs")
    assert attrs(second, "data-rows-read") == [str(i) for i in range(9, -1, -1)]
    failed = page(ui, "/ui/runs?engine=busy&status=failed")
    assert 'data-total="30"' in failed


def test_skew_against_the_newest_build_is_listed_and_drawn(
    busy: tuple[TestClient, FeatureStore],
) -> None:
    ui, store = busy
    text = page(ui, f"/ui/lineage/model/{MODEL}")
    assert attrs(rows(text, "skew"), "data-skew") == [
        "user_profile:age",  # serves v1, trained on v2
        "merchant_stats:category",  # serves it, the newest build did not read it
    ]
    newest = store.registry.training_sets(store.project, MODEL)[0]
    nodes, edges = graph_of(text)
    assert nodes["view:user_profile@v2"] == "/ui/views/user_profile"
    assert ("view:user_profile@v2", f"training_set:{newest.id}") in edges
    assert ("view:user_profile@v1", f"training_set:{newest.id}") in edges  # its other features


def test_a_failed_runs_error_and_inputs_are_shown_with_passwords_masked(
    busy: tuple[TestClient, FeatureStore],
) -> None:
    ui, store = busy
    (failed, *_) = store.registry.runs.records(store.project, status="failed", limit=1)
    text = page(ui, f"/ui/runs/{failed.id}")
    assert 'data-status="failed"' in text
    assert "cannot reach redis://:***@cache:6379/0" in html.unescape(text)
    assert attrs(rows(text, "sources"), "data-source") == [
        f"s3://reader:***@bucket/part-{failed.rows_read}.parquet"
    ]
    assert 'data-validation="none"' in text
    for path in ("/ui/runs?engine=busy", f"/ui/lineage/model/{MODEL}", "/ui/audit"):
        assert SECRET not in page(ui, path)
    assert SECRET not in text


def test_a_builds_references_that_name_no_version_are_left_out_of_its_graph(
    store: FeatureStore,
) -> None:
    g = LineageGraph(Renderer("/ui"), store.snapshot())
    build = {
        "id": 5,
        "model": None,
        "features": ["user_profile:age", "not a ref", "user_profile@v1:age"],
    }
    key = g.training_set(build)
    assert [a for a, b in g.graph.edges if b == key] == ["view:user_profile@v1"]
    assert ("source:user_profile_source", "view:user_profile@v1") in g.graph.edges
    assert g.graph.nodes[key].href == "/ui/training-sets/5"
