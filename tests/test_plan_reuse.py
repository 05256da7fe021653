"""Lookup plans across registry reloads, against a real Redis: an apply that changes one
model of thousands recompiles one plan, and a plan carried over is never stale."""

from __future__ import annotations

import copy
import gc
import itertools
import pickle
import time
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from featurestore import FeatureStore
from featurestore.errors import AuthenticationError, PolicyDeniedError
from featurestore.online import catalog as catalog_module
from featurestore.online.catalog import Catalog
from featurestore.online.client import OnlineClient
from featurestore.registry.snapshot import RegistrySnapshot
from featurestore.serving.app import create_app
from tests.helpers import replace_in_file, write_repo

pytestmark = pytest.mark.services
VIEWS = 20
_projects = itertools.count()

HEADER = """
from featurestore import Entity, FeatureService, FeatureView, Field, Float32, Float64, Int64, Model
from featurestore import ParquetSource

user = Entity(name="user", join_key="user_id", dtype=Int64)
src = ParquetSource(name="src", path="data/src")
"""


def view_text(v: int, dtype: str = "Float64") -> str:
    return (
        f'view_{v} = FeatureView(name="view_{v}", entities=[user], source=src, '
        f'schema=[Field(name="f0", dtype={dtype}), Field(name="f1", dtype=Float64)], '
        f'tags={{"team": "t{v % 2}"}})\n'
    )


def model_text(i: int) -> str:
    return (
        f'svc_{i} = FeatureService(name="svc_{i}", '
        f'features=["view_{i % VIEWS}:f0", "view_{(i + 1) % VIEWS}:f1"])\n'
        f'model_{i} = Model(name="model_{i}", feature_services=[svc_{i}], purpose="fraud", '
        'owner="ml@example.com")\n'
    )


def many_models_repo(path: Path, redis_url: str, models: int) -> Path:
    config = (
        f"project: reuse{next(_projects)}\nregistry: data/registry.db\n"
        f"online_store:\n  redis_url: {redis_url}\n"
    )
    views = HEADER + "".join(view_text(v) for v in range(VIEWS))
    defs = "from views import src, user  # noqa: F401\nfrom views import *  # noqa: F403\n"
    defs += "from featurestore import FeatureService, Model\n"
    defs += "".join(model_text(i) for i in range(models))
    return write_repo(path, {"featurestore.yaml": config, "views.py": views, "models.py": defs})


def rows(values: list[float]) -> pa.Table:
    now = datetime.now(UTC)
    return pa.table(
        {
            "user_id": pa.array([1], pa.int64()),
            "event_timestamp": pa.array([now], pa.timestamp("us", tz="UTC")),
            "f0": pa.array([values[0]], pa.float64()),
            "f1": pa.array([values[1]], pa.float64()),
        }
    )


@pytest.fixture
def repo(tmp_path: Path, services: Any) -> Path:
    root = many_models_repo(tmp_path / "repo", services.redis_url, models=2000)
    with FeatureStore(root) as store:
        store.apply()
        for v in range(VIEWS):
            store.write_online(f"view_{v}", rows([float(v), v + 0.5]))
    return root


def client_of(store: FeatureStore) -> OnlineClient:
    """A client that checks the registry's serial before every lookup."""
    return store.online_client(refresh_seconds=0.0, cache=None)


def values(client: OnlineClient, **request: Any) -> dict[str, list[Any]]:
    return client.get_online_features([{"user_id": 1}], **request).to_dict()


def test_an_apply_that_changes_one_model_of_2000_recompiles_one_plan(repo: Path) -> None:
    with FeatureStore(repo) as server, FeatureStore(repo) as deployer:
        client = client_of(server)
        assert values(client, model="model_7") == {"user_id": [1], "f0": [7.0], "f1": [8.5]}
        for i in range(2000):
            client.plan(model=f"model_{i}")
        ad_hoc = ["view_3:f0", "view_4:f1"]
        assert values(client, features=ad_hoc)["f0"] == [3.0]
        assert client.catalog.stats()["compiled"] == 2001

        # Another process changes model_7's service (and nothing else) and applies.
        replace_in_file(
            repo / "models.py",
            'svc_7 = FeatureService(name="svc_7", features=["view_7:f0", "view_8:f1"])',
            'svc_7 = FeatureService(name="svc_7", features=["view_7:f0", "view_9:f1"])',
        )
        assert deployer.apply().plan.has_changes
        assert values(client, model="model_8") == {"user_id": [1], "f0": [8.0], "f1": [9.5]}
        catalog = client.catalog
        assert catalog.serial > 1  # the lookup above saw the apply
        assert catalog.stats() == {"plans": 2000, "compiled": 0, "carried": 2000}
        for i in range(2000):
            client.plan(model=f"model_{i}")
        assert values(client, features=ad_hoc)["f0"] == [3.0]
        assert catalog.stats()["compiled"] == 1  # model_7's, and only it
        # The one recompiled plan reads what the apply says.
        assert values(client, model="model_7") == {"user_id": [1], "f0": [7.0], "f1": [9.5]}


def test_a_new_view_version_recompiles_what_reads_it_and_pins_hold(repo: Path) -> None:
    with FeatureStore(repo) as server, FeatureStore(repo) as deployer:
        client = client_of(server)
        for i in range(40):
            client.plan(model=f"model_{i}")
        latest = ["view_0:f0"]
        assert values(client, features=latest)["f0"] == [0.0]

        # view_0 gets a version 2; models stay pinned to v1 until promoted.
        replace_in_file(repo / "views.py", view_text(0), view_text(0, "Float32"))
        deployer.apply()
        deployer.write_online("view_0", rows([100.0, 100.5]))
        assert values(client, model="model_0")["f0"] == [0.0]  # still v1
        assert client.plan(model="model_0").refs[0] == "view_0@v1:f0"
        assert values(client, features=latest)["f0"] == [100.0]  # the latest is v2
        # Nothing but the feature list read view_0's head: every model plan was carried.
        assert client.catalog.stats()["compiled"] == 1

        deployer.promote("model_0")  # a new pin: model_0's plan must not be the old one
        assert values(client, model="model_0")["f0"] == [100.0]
        assert client.plan(model="model_0").refs[0] == "view_0@v2:f0"
        assert values(client, model="model_20")["f0"] == [0.0]  # model_20 is not promoted
        assert client.catalog.stats()["compiled"] == 1


POLICY = """
from featurestore.definitions import FeatureMatch, ModelMatch, Policy

mask_team_1 = Policy(
    name="mask_team_1",
    effect="mask",
    mask="{how}",
    features=FeatureMatch(tags={{"team": "t1"}}),
    models=ModelMatch(purposes=["fraud"]),
)
"""


def test_a_changed_policy_recompiles_every_plan(repo: Path) -> None:
    with FeatureStore(repo) as server, FeatureStore(repo) as deployer:
        client = client_of(server)
        for i in range(50):
            client.plan(model=f"model_{i}")
        assert values(client, model="model_0") == {"user_id": [1], "f0": [0.0], "f1": [1.5]}

        (repo / "policies.py").write_text(POLICY.format(how="redact"))
        deployer.apply()
        assert values(client, model="model_0") == {"user_id": [1], "f0": [0.0], "f1": [None]}
        assert client.catalog.stats()["carried"] == 0
        for i in range(50):
            client.plan(model=f"model_{i}")
        assert client.catalog.stats()["compiled"] == 50

        # (A deny rule would be refused by the apply itself: models read these features.)
        (repo / "policies.py").write_text(POLICY.format(how="hash"))
        deployer.apply()
        masked = values(client, model="model_0")["f1"][0]
        assert isinstance(masked, str)  # a keyed hash now
        assert masked != "1.5"
        assert client.catalog.stats()["carried"] == 0


def test_a_revoked_key_is_refused_after_a_reload_that_carries_plans(repo: Path) -> None:
    with FeatureStore(repo) as server, FeatureStore(repo) as admin:
        revoked, key = admin.create_credential("model_3")
        _other, other_key = admin.create_credential("model_4")
        client = client_of(server)
        assert values(client, api_key=key)["f0"] == [3.0]
        assert values(client, api_key=other_key)["f0"] == [4.0]

        admin.revoke_credential(revoked.key_id)
        with pytest.raises(AuthenticationError, match="revoked"):
            values(client, api_key=key)
        assert values(client, api_key=other_key)["f0"] == [4.0]
        assert client.catalog.stats()["carried"] == 1  # the other key's plan, not this one


def test_policy_default_mask_key_and_keys_decide_what_is_carried(repo: Path) -> None:
    with FeatureStore(repo) as store:
        old = store.catalog()
        for i in range(10):
            old.plan(model=f"model_{i}")
        snapshot = old.snapshot
        same = Catalog(snapshot, mask_key=old.mask_key, keys=old.keys, previous=old)
        assert same.stats() == {"plans": 10, "compiled": 0, "carried": 10}
        for changed in (
            Catalog(snapshot, policy_default="deny", mask_key=old.mask_key, previous=old),
            Catalog(snapshot, mask_key=b"another key", previous=old),
        ):
            assert changed.stats()["carried"] == 0


def _counter(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_the_server_counts_compiled_and_carried_plans(repo: Path) -> None:
    with FeatureStore(repo) as server, FeatureStore(repo) as deployer:
        _credential, key = deployer.create_credential("model_0")
        app = create_app(feature_store=server, refresh_seconds=0.05)
        lists = [[f"view_{v}:f0"] for v in range(VIEWS)]

        def ask_all(http: TestClient) -> None:
            for features in lists:
                body = {"features": features, "entities": [{"user_id": 1}]}
                r = http.post("/v1/features", json=body, headers={"X-API-Key": key})
                assert r.status_code == 200, r.text

        def serial(http: TestClient) -> int:
            return int(http.get("/readyz").json()["registry_serial"])

        with TestClient(app) as http:
            ask_all(http)
            text = http.get("/metrics").text
            compiled = _counter(text, "featurestore_plans_compiled_total")
            carried = _counter(text, "featurestore_plans_carried_total")
            before = serial(http)
            replace_in_file(
                repo / "models.py",
                'name="model_7", feature_services',
                'name="model_7", description="x", feature_services',
            )
            deployer.apply()
            deadline = time.monotonic() + 30
            while serial(http) == before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert serial(http) > before
            ask_all(http)
            text = http.get("/metrics").text
            assert _counter(text, "featurestore_plans_compiled_total") == compiled
            assert _counter(text, "featurestore_plans_carried_total") == carried + VIEWS


def test_the_cap_on_feature_list_plans_keeps_model_plans(
    tmp_path: Path, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Feature lists are the client's to vary without end, so their plans are capped; a
    # model's plan is bounded by the registry and must survive the cap (at 100,000 models
    # a cap over all plans would recompile them over and over).
    monkeypatch.setattr(catalog_module, "MAX_ADHOC_PLANS", 5)
    with FeatureStore(many_models_repo(tmp_path / "repo", services.redis_url, 30)) as store:
        store.apply()
        catalog = store.catalog()
        for i in range(30):
            catalog.plan(model=f"model_{i}")
        for v in range(VIEWS):
            catalog.plan(features=[f"view_{v}:f0"])
        assert catalog.stats()["compiled"] == 30 + VIEWS
        for i in range(30):
            catalog.plan(model=f"model_{i}")
        assert catalog.stats()["compiled"] == 30 + VIEWS  # no model plan was dropped
        assert catalog.stats()["plans"] <= 30 + 6


DENY_VIEW_5 = """
from featurestore.definitions import FeatureMatch, ModelMatch, Policy

no_view_5_for_model_0 = Policy(
    name="no_view_5_for_model_0",
    effect="deny",
    features=FeatureMatch(views=["view_5"]),
    models=ModelMatch(names=["model_0"]),
)
"""


def test_a_replaced_catalog_is_freed_without_the_cycle_collector(
    tmp_path: Path, services: Any
) -> None:
    # The server freezes its catalog out of the collector's sight (serving/heap.py): a
    # replaced catalog in a reference cycle would then never be freed, snapshot and all.
    root = many_models_repo(tmp_path / "repo", services.redis_url, 30)
    (root / "policies.py").write_text(DENY_VIEW_5)
    with FeatureStore(root) as store:
        store.apply()
        _credential, key = store.create_credential("model_0")
        catalog = store.catalog()
        caller = catalog.authenticate(key)
        for i in range(30):
            catalog.plan(model=f"model_{i}")
        denials = []
        for _ in range(2):  # the first denial is decided, the second remembered
            try:  # not pytest.raises: its ExceptionInfo outlives the block
                catalog.plan(features=["view_5:f0"], caller=caller)
            except PolicyDeniedError as exc:
                denials.append(exc.rule)
        assert denials == ["no_view_5_for_model_0"] * 2
        newer = store.catalog(previous=catalog)
        assert newer.stats()["carried"] == 30
        gone = weakref.ref(catalog)
        snapshot_gone = weakref.finalize(catalog.snapshot, lambda: None)
        # A raised exception and its frames are a cycle of their own (a local holds it),
        # garbage the young collections take; what matters is the catalog's own cycles.
        gc.collect()
        gc.disable()
        try:
            del catalog, caller
            assert gone() is None
            assert not snapshot_gone.alive
        finally:
            gc.enable()


def test_a_snapshot_read_after_another_equals_a_full_read(tmp_path: Path, services: Any) -> None:
    # Reloads read only what changed and share the rest with the previous snapshot; the
    # result must be the snapshot a full read gives, whatever kind of change it was.
    root = many_models_repo(tmp_path / "repo", services.redis_url, 30)
    with FeatureStore(root) as store:
        store.apply()
        registry, project = store.registry, store.project

        def same_as_full(previous: RegistrySnapshot) -> RegistrySnapshot:
            read = registry.snapshot(project, previous=previous)
            full = registry.snapshot(project)
            assert (read.serial, read.heads, read.versions) == (
                full.serial,
                full.heads,
                full.versions,
            )
            return read

        first = registry.snapshot(project)
        assert same_as_full(first).heads["model", "model_5"] is first.heads["model", "model_5"]
        views = root / "views.py"
        replace_in_file(views, view_text(0), view_text(0).replace("tags=", 'owner="x", tags='))
        replace_in_file(views, view_text(1), view_text(1, "Float32"))  # view_1@v2
        models = root / "models.py"
        replace_in_file(
            models,
            'name="model_3", feature_services=[svc_3], purpose="fraud"',
            'name="model_3", feature_services=[svc_3], purpose="risk"',
        )
        replace_in_file(models, model_text(29), "")  # model_29 and svc_29 retired
        store.apply()
        second = same_as_full(first)
        assert second.view_version("view_0", 1).spec["owner"] == "x"  # rewritten in place
        assert second.latest_version("view_1") == 2
        assert second.heads["model", "model_29"].status == "retired"
        for model in ("model_0", "model_1", "model_20", "model_21"):  # those reading view_1
            store.promote(model)
        store.retire("view_1", 1)  # a status change, no new revision
        third = same_as_full(second)
        assert third.versions["view_1"][1].status == "retired"
        # Snapshots still pickle and copy (specs parsed or not), as the dataclasses did.
        third.model("model_0")
        for copied in (pickle.loads(pickle.dumps(third)), copy.deepcopy(third)):
            assert (copied.heads, copied.versions) == (third.heads, third.versions)


def test_a_drift_monitor_change_recompiles_its_models_plan_only(
    tmp_path: Path, services: Any
) -> None:
    # The serving log's sample rate is part of a plan; only the watched model's changes.
    root = many_models_repo(tmp_path / "repo", services.redis_url, 30)
    monitor = (
        "from featurestore import DriftMonitor\n"
        'm0_drift = DriftMonitor(name="m0_drift", model="model_0", sample_rate={rate})\n'
    )
    with FeatureStore(root) as store:
        store.apply()
        catalog = store.catalog()
        for i in range(30):
            catalog.plan(model=f"model_{i}")
        for rate in (0.5, 0.25):
            (root / "monitors.py").write_text(monitor.format(rate=rate))
            store.apply()
            catalog = store.refreshed(catalog)
            assert catalog.stats()["carried"] == 29
            assert catalog.plan(model="model_0").sample_rate == rate
            assert catalog.plan(model="model_1").sample_rate == 0.0
            for i in range(30):
                catalog.plan(model=f"model_{i}")
            assert catalog.stats()["compiled"] == 1
