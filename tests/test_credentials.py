"""API keys: create/list/revoke, keys on in-process lookups, and tenant isolation on the
HTTP server (two projects sharing one registry and one Redis), including a few hundred
generated bad requests."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import app
from featurestore.errors import AccessDeniedError, AuthenticationError, PolicyDeniedError
from featurestore.policy.engine import mask_value
from tests.helpers import ONLINE_REPO, write_repo
from tests.test_online_store import user_stats
from tests.test_policy import policy_store
from tests.test_serving import Server, start_server, stop_server

pytestmark = pytest.mark.services
_n = itertools.count()
runner = CliRunner()


@pytest.fixture
def store(tmp_path: Path, services: Any) -> Iterator[FeatureStore]:
    """The policy test repo (fraud masks e-mail, marketing may not read it), with data."""
    yield from policy_store(tmp_path, services.redis_url, "cred")


def cli(store: FeatureStore, *args: str) -> Any:
    return runner.invoke(app, [*args, "--repo", str(store.config.repo_path)])


def test_create_prints_the_key_once_and_stores_only_a_salted_hash(store: FeatureStore) -> None:
    created = cli(store, "credentials", "create", "--model", "fraud", "--description", "scorer")
    assert created.exit_code == 0, created.output
    key = created.stdout.splitlines()[0]
    assert key.startswith("fsk_")
    assert len(key) == 64
    key_id, secret = key[4:20], key[21:]
    registry_files = b"".join(
        p.read_bytes() for p in (store.config.repo_path / "data").glob("registry.db*")
    )
    assert key_id.encode() in registry_files
    assert secret.encode() not in registry_files  # never stored, in any form we could read
    listed = cli(store, "credentials", "list")
    for shown in (f"fsk_{key_id}", "fraud", "scorer"):
        assert shown in listed.output
    assert secret not in listed.output
    second = cli(store, "credentials", "create", "--model", "fraud").stdout.splitlines()[0]
    assert second != key  # two keys of one model are two keys

    revoked = cli(store, "credentials", "revoke", f"fsk_{key_id}")
    assert revoked.exit_code == 0, revoked.output
    assert "Revoked" in revoked.output
    assert cli(store, "credentials", "revoke", key).exit_code == 0  # idempotent, key pasted whole
    active = cli(store, "credentials", "list", "--json")
    assert [c["key_id"] for c in orjson.loads(active.stdout)] == [second[4:20]]
    every = orjson.loads(cli(store, "credentials", "list", "--all", "--json").stdout)
    assert {c["key_id"]: c["status"] for c in every} == {key_id: "revoked", second[4:20]: "active"}

    actions = [r.action for r in store.registry.audit.records(store.project)]
    assert actions[:3] == ["credential_revoke", "credential_create", "credential_create"]
    assert store.registry.audit.verify(store.project).ok


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "fraudd"], "Did you mean 'fraud'"),
        (["--model", "fraud", "--expires", "soon"], "neither a duration"),
        (["--model", "fraud", "--expires", "2001-01-01"], "in the past"),
    ],
)
def test_bad_create_requests_are_refused_and_leave_nothing(
    store: FeatureStore, args: list[str], message: str
) -> None:
    result = cli(store, "credentials", "create", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert store.registry.credentials.records(store.project) == []
    assert store.registry.audit.records(store.project, action="credential_create") == []


def test_revoke_names_an_unknown_or_malformed_key(store: FeatureStore) -> None:
    assert (
        "has no API key fsk_0123456789abcdef"
        in cli(store, "credentials", "revoke", "0123456789abcdef").output
    )
    assert "is not a key id" in cli(store, "credentials", "revoke", "zzz").output


def test_a_key_acts_as_its_model_in_process(store: FeatureStore) -> None:
    _c, fraud_key = store.create_credential("fraud")
    _c, promo_key = store.create_credential("promo")
    client = store.online_client(api_key=fraud_key)
    rows = [{"user_id": 1}, {"user_id": 2}]
    mask_key = store.mask_key()
    masked = [mask_value("ann@example.com", "hash", mask_key), None]
    assert client.get_online_features(rows).to_dict()["email"] == masked  # the key's model
    # A feature list is decided by the key's model's policies too.
    listed = client.get_online_features(rows, features=["profile:email", "profile:country"])
    assert listed.to_dict() == {"user_id": [1, 2], "email": masked, "country": ["DE", "FR"]}
    with pytest.raises(
        AccessDeniedError, match="belongs to model 'fraud'; it may not read model 'promo'"
    ):
        client.get_online_features(rows, model="promo")

    promo = store.online_client(api_key=promo_key)
    assert promo.get_online_features(rows).to_dict()["country"] == ["DE", "FR"]
    for _ in range(3):
        with pytest.raises(PolicyDeniedError, match="no_pii_for_marketing"):
            promo.get_online_features(rows, features=["profile:email"])
    store.audit_queue.flush()
    denials = store.registry.audit.records(store.project, action="deny")
    assert len(denials) == 1  # a repeated denial is counted, not logged again
    assert denials[0].detail["count"] == 3
    assert denials[0].actor == f"fsk_{promo_key[4:20]}"
    assert denials[0].rule == "no_pii_for_marketing"
    assert denials[0].detail["at"] == "online"
    masks = store.registry.audit.records(store.project, action="mask")
    assert {tuple(r.detail["features"]) for r in masks} == {("profile@v1:email",)}

    assert client.usage() == {
        ("fraud", "profile@v1:email", "mask"): (2, 4),
        ("fraud", "profile@v1:score", "allow"): (1, 2),
        ("fraud", "profile@v1:country", "allow"): (1, 2),
    }
    assert promo.usage()[("promo", "profile@v1:email", "deny")] == (3, 0)


def test_revoked_and_expired_keys_stop_working(store: FeatureStore) -> None:
    _c, key = store.create_credential("fraud")
    client = store.online_client(api_key=key, refresh_seconds=0.0)
    assert client.get_online_features([{"user_id": 1}]).to_dict()["score"] == [0.5]
    with FeatureStore(store.config.repo_path) as admin:
        admin.revoke_credential(key)
    with pytest.raises(AuthenticationError, match="was revoked"):
        client.get_online_features([{"user_id": 1}])

    soon = datetime.now(UTC) + timedelta(hours=1)
    _c, expiring = store.create_credential("fraud", expires_at=soon)
    catalog = store.catalog()
    assert catalog.authenticate(expiring).model == "fraud"
    with pytest.raises(AuthenticationError, match="expired at"):
        catalog.authenticate(expiring, now=soon + timedelta(seconds=1))


def test_a_repo_can_require_keys_for_in_process_lookups(store: FeatureStore) -> None:
    config = store.config.repo_path / "featurestore.yaml"
    config.write_text(config.read_text() + "  require_api_key: true\n")
    with FeatureStore(store.config.repo_path) as strict:
        with pytest.raises(AuthenticationError, match="requires an API key"):
            strict.get_online_features([{"user_id": 1}], model="fraud")
        _c, key = strict.create_credential("fraud")
        got = strict.get_online_features([{"user_id": 1}], api_key=key)
        assert got.to_dict()["score"] == [0.5]
        with pytest.raises(AuthenticationError, match="not a featurestore API key"):
            strict.online_client(api_key="fsk_nope")


# -- tenants ----------------------------------------------------------------------------

ALPHA_VALUE, BETA_VALUE = 10.5, 987654.25
MASKED_DEFS = (
    ONLINE_REPO["defs.py"]
    + """
        from featurestore import FeatureMatch, ModelMatch, Policy

        hashed_country = Policy(
            name="hashed_country",
            effect="mask",
            mask="hash",
            features=FeatureMatch(views=["user_stats"], features=["country"]),
            models=ModelMatch(purposes=["fraud"]),
        )
"""
)


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory, services: Any) -> Iterator[dict[str, Any]]:
    """Projects alpha and beta on one registry and one Redis; a server for alpha."""
    root = tmp_path_factory.mktemp("tenants")
    suffix = next(_n)
    stores = {}
    for name, value in (("alpha", ALPHA_VALUE), ("beta", BETA_VALUE)):
        project = f"{name}{suffix}"
        config = (
            f"project: {project}\nregistry: {root / 'shared-registry.db'}\n"
            f"online_store:\n  redis_url: {services.redis_url}\n"
        )
        repo = write_repo(root / name, {"featurestore.yaml": config, "defs.py": MASKED_DEFS})
        with FeatureStore(repo) as s:
            s.apply()
            s.write_online("user_stats", user_stats([1, 2], [datetime.now(UTC)] * 2, [value] * 2))
        stores[name] = repo
    with FeatureStore(stores["beta"]) as beta:
        _c, beta_key = beta.create_credential("fraud_model")
    with FeatureStore(stores["alpha"]) as alpha:
        _c, revoked = alpha.create_credential("fraud_model")
        alpha.revoke_credential(revoked)
        _c, expiring = alpha.create_credential(
            "fraud_model", expires_at=datetime.now(UTC) + timedelta(seconds=1)
        )
        mask_key = alpha.mask_key()
    server = start_server(stores["alpha"])
    import time

    time.sleep(1.1)  # `expiring` has expired
    yield {
        "server": server,
        "alpha": stores["alpha"],
        "beta_key": beta_key,
        "revoked": revoked,
        "expired": expiring,
        "mask_key": mask_key,
    }
    stop_server(server)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_key_reads_its_own_project_and_model_only(tenants: dict[str, Any]) -> None:
    server: Server = tenants["server"]
    rows = [{"user_id": 1, "merchant_id": "m1"}]
    ok = server.post({"entities": rows})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    names = body["metadata"]["feature_names"]
    assert body["results"][names.index("avg_amount")]["values"] == [ALPHA_VALUE]
    country = mask_value("DE", "hash", tenants["mask_key"])
    assert body["results"][names.index("country")]["values"] == [country]  # masked over HTTP
    listed = server.post({"features": ["user_stats:country"], "entities": rows})
    assert listed.json()["results"][0]["values"] == [country]

    cases = {
        "no key": ({}, 401, "requires an API key"),
        "another project's key": (bearer(tenants["beta_key"]), 401, "never issued here"),
        "revoked": (bearer(tenants["revoked"]), 401, "was revoked"),
        "expired": (bearer(tenants["expired"]), 401, "expired at"),
        "malformed": (bearer("fsk_123"), 401, "not a featurestore API key"),
        "basic auth": ({"Authorization": "Basic YTpi"}, 401, "Bearer"),
        "x-api-key of beta": ({"X-API-Key": tenants["beta_key"]}, 401, "never issued here"),
    }
    for case, (headers, status, message) in cases.items():
        response = server.post({"model": "fraud_model", "entities": rows}, headers=headers)
        assert response.status_code == status, (case, response.text)
        assert message in response.json()["detail"], case
        assert response.headers.get("www-authenticate", "").startswith("Bearer"), case
        assert str(BETA_VALUE) not in response.text
    # A good key of alpha is also accepted as X-API-Key.
    assert server.post({"entities": rows}, headers={"X-API-Key": server.key}).status_code == 200


NAMES = st.sampled_from(
    [
        "fraud_model",
        "fraud_modl",
        "beta",
        "../beta",
        "fs:beta:user:1",
        "user_stats",
        "user_stats:avg_amount",
        "user_stats@v1:avg_amount",
        "user_stats@v0:avg_amount",
        "user_stats@v99999999999999999999:avg_amount",
        "beta:user_stats:avg_amount",
        "user_stats:avg_amount\x00",
        "user_stats:*",
        "merchant_stats:chargeback_rate ",
        "ünïcödé:feature",
        "offline_only:label_rate",
        "fraud",
        "",
        "x" * 5000,
    ]
)
KEY_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=30),
    st.sampled_from(["1", "fs:beta:user:1", "1,m1", "m1%2C", "*", "\x00", None, True, 1.5]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)
PLAUSIBLE_ROW = st.fixed_dictionaries(
    {
        "user_id": st.one_of(st.integers(0, 3), KEY_VALUES),
        "merchant_id": st.one_of(
            st.sampled_from(["m1", "m1,1", "fs:beta:merchant:m1"]), KEY_VALUES
        ),
    }
)
ENTITY_ROWS = st.one_of(
    st.lists(PLAUSIBLE_ROW, min_size=1, max_size=3),
    st.lists(
        st.dictionaries(
            st.sampled_from(["user_id", "merchant_id", "beta_user_id", "", "user_id "]),
            KEY_VALUES,
            max_size=3,
        ),
        max_size=3,
    ),
    st.dictionaries(st.sampled_from(["user_id", "merchant_id"]), st.lists(KEY_VALUES, max_size=3)),
    KEY_VALUES,
)
HEADERS = st.sampled_from(
    ["good"] * 7 + ["beta", "revoked", "expired", "none", "garbage", "empty bearer"]
)
BODIES = st.one_of(
    st.fixed_dictionaries({"entities": ENTITY_ROWS, "model": NAMES}),
    st.fixed_dictionaries({"entities": ENTITY_ROWS, "features": st.lists(NAMES, max_size=3)}),
    st.fixed_dictionaries(
        {"entities": ENTITY_ROWS},
        optional={
            "model": st.one_of(NAMES, st.integers(), st.none()),
            "features": st.one_of(st.lists(NAMES, max_size=3), NAMES, st.none()),
            "full_feature_names": st.one_of(st.booleans(), st.text(max_size=2)),
            "project": st.just("beta"),
        },
    ),
    st.binary(max_size=40),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(header=HEADERS, body=BODIES)
def test_generated_bad_requests_get_a_4xx_and_never_another_tenants_data(
    tenants: dict[str, Any], header: str, body: Any
) -> None:
    server: Server = tenants["server"]
    headers = {
        "good": bearer(server.key or ""),
        "beta": bearer(tenants["beta_key"]),
        "revoked": bearer(tenants["revoked"]),
        "expired": bearer(tenants["expired"]),
        "none": {},
        "garbage": bearer("fsk_" + "g" * 60),
        "empty bearer": {"Authorization": "Bearer"},
    }[header]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()  # big ints too
    response = httpx.post(f"{server.url}/v1/features", content=content, headers=headers, timeout=10)
    assert response.status_code < 500, (body, response.text)
    assert str(BETA_VALUE) not in response.text
    if header != "good":
        assert response.status_code == 401, (header, response.text)
    if response.status_code >= 400:
        error = response.json()
        assert error["error"], response.text
        assert error["detail"], response.text
    else:
        for column in response.json()["results"]:
            assert all(
                v in (ALPHA_VALUE, None) or not isinstance(v, float) for v in column["values"]
            )
