"""One caller cannot flood the audit log: online denials and masks are coalesced per key,
rule and window, every one counted, and the chain stays verifiable (real Redis, real
registry, the in-process client with API keys)."""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import app
from featurestore.errors import PolicyDeniedError
from featurestore.registry.audit import AuditQueue, AuditRecord
from featurestore.registry.audit_window import (
    MAX_EXAMPLES,
    MAX_FEATURES,
    WINDOW_SECONDS,
    DecisionWindows,
)
from tests.helpers import write_repo

pytestmark = pytest.mark.services
_n = itertools.count()
ALLOWED = [f"a{i}" for i in range(10)]

DEFS = f"""
from datetime import timedelta

from featurestore import (
    Entity, FeatureMatch, FeatureService, FeatureView, Field, Float64, Int64, Model,
    ModelMatch, ParquetSource, Policy,
)

user = Entity(name="user", join_key="user_id", dtype=Int64)
wide = FeatureView(
    name="wide",
    entities=[user],
    source=ParquetSource(name="src", path="data/src"),
    schema=[
        *[Field(name=n, dtype=Float64) for n in {ALLOWED!r}],
        Field(name="secret", dtype=Float64, tags={{"class": "secret"}}),
        Field(name="pii", dtype=Float64, tags={{"class": "pii"}}),
        Field(name="hashed", dtype=Float64, tags={{"class": "hashed"}}),
    ],
    ttl=timedelta(days=1),
)
scorer = Model(
    name="scorer",
    feature_services=[FeatureService(name="scoring", features=[wide[{ALLOWED!r}]])],
    purpose="scoring",
    owner="risk",
)
no_secrets = Policy(
    name="no_secrets", effect="deny", features=FeatureMatch(tags={{"class": "secret"}}),
    models=ModelMatch(purposes=["scoring"]),
)
no_pii = Policy(
    name="no_pii", effect="deny", features=FeatureMatch(tags={{"class": "pii"}}),
    models=ModelMatch(purposes=["scoring"]),
)
hash_it = Policy(
    name="hash_it", effect="mask", mask="hash", features=FeatureMatch(tags={{"class": "hashed"}}),
    models=ModelMatch(purposes=["scoring"]),
)
"""


@pytest.fixture
def store(tmp_path: Path, services: Any) -> Iterator[FeatureStore]:
    config = (
        f"project: flood{next(_n)}\nregistry: data/registry.db\n"
        f"online_store:\n  redis_url: {services.redis_url}\n"
    )
    repo = write_repo(tmp_path / "repo", {"featurestore.yaml": config, "defs.py": DEFS})
    with FeatureStore(repo) as s:
        s.apply()
        now = datetime.now(UTC)
        row = {n: [1.0] for n in [*ALLOWED, "secret", "pii", "hashed"]}
        s.write_online(
            "wide",
            pa.table(
                {
                    "user_id": pa.array([1], pa.int64()),
                    "event_timestamp": pa.array(
                        [now - timedelta(minutes=1)], pa.timestamp("us", tz="UTC")
                    ),
                    **row,
                }
            ),
        )
        yield s


def feature_lists(extra: str) -> Iterator[list[str]]:
    """Distinct requests: ordered picks of allowed features, then ``extra``."""
    for size in (1, 2, 3):
        for picked in itertools.permutations(ALLOWED, size):
            yield [f"wide:{n}" for n in picked] + [f"wide:{extra}"]


def test_a_flood_of_varied_denials_adds_a_bounded_number_of_counted_records(
    store: FeatureStore,
) -> None:
    # A record of the old shape (one per denial, no count) stays verifiable beside new ones.
    store.registry.audit.append(
        AuditRecord(
            project=store.project,
            action="deny",
            actor="fsk_0000000000000000",
            subject="scorer wide@v1:secret",
            decision="deny",
            rule="no_secrets",
            detail={"at": "online", "key": "fsk_0000000000000000", "message": "old"},
        )
    )
    before = len(store.registry.audit.records(store.project))
    _c, key1 = store.create_credential("scorer")
    _c, key2 = store.create_credential("scorer")
    label1, label2 = f"fsk_{key1[4:20]}", f"fsk_{key2[4:20]}"
    client1 = store.online_client(api_key=key1)
    client2 = store.online_client(api_key=key2)
    rows = [{"user_id": 1}]
    sent: Counter[tuple[str, str]] = Counter()
    begin = time.monotonic()
    for client, label, extra, rule, n in [
        (client1, label1, "secret", "no_secrets", 800),
        (client1, label1, "pii", "no_pii", 600),
        (client2, label2, "secret", "no_secrets", 600),
    ]:
        for features in itertools.islice(feature_lists(extra), n):
            with pytest.raises(PolicyDeniedError, match=rule):
                client.get_online_features(rows, features=features)
            sent[(label, rule)] += 1
    for _ in range(25):  # the same denied request again: refused from the cache, still counted
        with pytest.raises(PolicyDeniedError):
            client2.get_online_features(rows, features=["wide:a0", "wide:secret"])
        sent[(label2, "no_secrets")] += 1
    masked = 0
    for features in itertools.islice(feature_lists("hashed"), 400):  # a new masked plan each
        assert client1.get_online_features(rows, features=features).to_dict()["hashed"] != [1.0]
        masked += 1
    store.audit_queue.flush()
    elapsed = time.monotonic() - begin
    assert sum(sent.values()) >= 2000

    added = store.registry.audit.records(store.project)[: -before or None]
    denials = [r for r in added if r.action == "deny"]
    # At most one record per key, rule and window (a run can straddle window edges).
    most = 1 + math.ceil(elapsed / WINDOW_SECONDS)
    per_caller = Counter((r.actor, r.rule) for r in denials)
    assert set(per_caller) == set(sent)  # two keys, two rules: separate records
    assert max(per_caller.values()) <= most
    counted: Counter[tuple[str, str]] = Counter()
    for r in denials:
        counted[(r.actor, r.rule)] += r.detail["count"]
        assert r.subject == "scorer"
        assert len(r.detail["examples"]) <= MAX_EXAMPLES
        assert len(r.detail["features"]) <= MAX_FEATURES
        assert len(orjson.dumps(r.detail)) < 8_000  # bounded, however many denials
        assert r.detail["first"] <= r.detail["last"]
    assert counted == sent  # nothing lost: every denial is counted

    masks = [r for r in added if r.action == "mask"]
    assert {(r.actor, r.rule) for r in masks} == {(label1, "hash_it")}
    assert len(masks) <= most
    assert sum(r.detail["count"] for r in masks) == masked  # masked plans, one per list
    assert all(r.detail["features"] == ["wide@v1:hashed"] for r in masks)
    assert len(added) <= 2 + len(per_caller) * most + most  # keys, denials, masks

    assert store.registry.audit.verify(store.project).ok
    repo = str(store.config.repo_path)
    verified = CliRunner().invoke(app, ["audit", "verify", "--repo", repo])
    assert verified.exit_code == 0, verified.output
    listed = CliRunner().invoke(app, ["audit", "--action", "deny", "--repo", repo])
    assert f"rule no_pii  by {label1}  600 times, " in listed.output


def test_a_window_closes_into_one_record_and_the_next_decision_opens_another() -> None:
    now = [1_000.0]
    windows = DecisionWindows(60.0, clock=lambda: now[0])
    deny = {
        "action": "deny",
        "subject": "scorer",
        "decision": "deny",
        "rule": "no_pii",
        "detail": {"at": "online", "key": "fsk_1", "features": ["wide@v1:pii"]},
    }
    for i in range(30):
        windows.add(
            {**deny, "detail": {**deny["detail"], "requested": [f"wide:a{i}"] * 30, "message": "m"}}
        )
        now[0] += 1.0
    assert windows.due() == []  # 30 s in: still open
    now[0] = 1_060.0
    (closed,) = windows.due()
    assert windows.due() == []
    detail = closed["detail"]
    assert (closed["rule"], detail["count"], detail["features"]) == ("no_pii", 30, ["wide@v1:pii"])
    assert (detail["first"], detail["last"]) == (
        "1970-01-01T00:16:40+00:00",
        "1970-01-01T00:17:09+00:00",
    )
    assert len(detail["examples"]) == MAX_EXAMPLES
    assert detail["examples"][0] == {
        "requested": ["wide:a0"] * MAX_FEATURES,
        "requested_omitted": 30 - MAX_FEATURES,
        "message": "m",
    }
    windows.add(deny)
    assert [r["detail"]["count"] for r in windows.drain()] == [1]


def test_the_writer_thread_writes_a_closed_window_without_a_flush(store: FeatureStore) -> None:
    queue = AuditQueue(
        store.registry.audit, store.project, "tester", window_seconds=0.2, tick_seconds=0.05
    )
    fields = {
        "action": "deny",
        "subject": "scorer",
        "decision": "deny",
        "rule": "no_pii",
        "detail": {"at": "online", "key": "fsk_2", "features": ["wide@v1:pii"]},
    }
    for _ in range(3):
        queue.put(fields)
    deadline = time.monotonic() + 30
    while not (found := store.registry.audit.records(store.project, action="deny")):
        assert time.monotonic() < deadline, "the closed window was never written"
        time.sleep(0.05)
    assert [(r.actor, r.detail["count"]) for r in found] == [("fsk_2", 3)]
    queue.flush()
    assert len(store.registry.audit.records(store.project, action="deny")) == 1
