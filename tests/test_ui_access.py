"""The web UI's door: only an operator's key opens it, sessions are signed, HttpOnly and
SameSite cookies that end with their key, nothing secret is ever shown, every response
carries the security headers, and hostile input is text (registry only: no services)."""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from featurestore import FeatureStore
from featurestore.errors import AccessDeniedError
from featurestore.registry.schema import SCHEMA_VERSION
from featurestore.ui.app import standalone
from featurestore.ui.headers import CSP
from featurestore.ui.session import COOKIE, Sessions
from tests.conftest import EXAMPLE_REPO

LOGIN = "/ui/login"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    repo = tmp_path_factory.mktemp("ui-access") / "feature_repo"
    shutil.copytree(
        EXAMPLE_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__", ".featurestore")
    )
    with FeatureStore(repo) as fs:
        fs.apply()
        yield fs


@pytest.fixture(scope="module")
def keys(store: FeatureStore) -> dict[str, str]:
    _, operator = store.create_operator_credential(description="access tests")
    _, model = store.create_credential("fraud_detector")
    _, push = store.create_push_credential(["user_txn_stats"])
    return {"operator": operator, "model": model, "push": push}


def client(store: FeatureStore) -> TestClient:
    return TestClient(standalone(store, refresh_seconds=0.0), follow_redirects=False)


def logged_in(store: FeatureStore, key: str) -> TestClient:
    c = client(store)
    answer = c.post(LOGIN, data={"key": key, "next": "/ui/"})
    assert answer.status_code == 303, answer.text
    return c


def alert(html: str) -> str:
    found = re.search(r'role="alert">([^<]*)<', html)
    return found.group(1) if found else ""


def test_every_page_needs_a_login(store: FeatureStore, keys: dict[str, str]) -> None:
    c = client(store)
    for path in ("/ui/", "/ui/objects/entity/user", "/ui/?q=email"):
        answer = c.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith(LOGIN + "?next=")
        assert "Catalog" not in answer.text
    api = c.get("/ui/api/catalog?q=email")
    assert api.status_code == 401
    assert "--operator" in api.json()["detail"]
    assert c.get("/").headers["location"] == "/ui/"  # the root sends a browser to the UI
    form = c.get(LOGIN)
    assert form.status_code == 200
    assert 'type="password"' in form.text  # the key is not echoed on screen


def test_login_sets_a_strict_httponly_session_and_returns_to_next(
    store: FeatureStore, keys: dict[str, str]
) -> None:
    c = client(store)
    answer = c.post(LOGIN, data={"key": keys["operator"], "next": "/ui/?q=email&kind=feature"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/?q=email&kind=feature"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for flag in ("HttpOnly", "SameSite=strict", "Path=/ui", "Max-Age="):
        assert flag in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback: a Secure cookie would be dropped
    assert keys["operator"].split("_", 2)[2] not in cookie  # the cookie never holds the secret
    page = c.get("/ui/?q=email")
    assert page.status_code == 200
    assert "user_profile:email" in page.text
    audited = store.registry.audit.records(store.project, action="ui_login", limit=5)
    assert audited
    assert audited[0].subject == "operator"
    assert c.post("/ui/logout").status_code == 303
    c.cookies.clear()
    assert c.get("/ui/").status_code == 303


@pytest.mark.parametrize(
    ("which", "status", "says"),
    [
        ("model", 403, "belongs to model fraud_detector"),
        ("push", 403, "belongs to push user_txn_stats"),
        ("garbage", 401, "not a featurestore API key"),
        ("unknown", 401, "never issued here"),
    ],
)
def test_only_an_operators_key_logs_in(
    store: FeatureStore, keys: dict[str, str], which: str, status: int, says: str
) -> None:
    key = {
        "garbage": "hunter2",
        "unknown": "fsk_0123456789abcdef_" + "A" * 43,
    }.get(which) or keys[which]
    answer = client(store).post(LOGIN, data={"key": key})
    assert answer.status_code == status
    assert says in alert(answer.text).replace("&#39;", "'")
    assert "set-cookie" not in answer.headers
    secret = key.split("_", 2)[-1]  # the whole secret (it may hold '_' itself)
    assert secret not in answer.text  # never echoed, right or wrong


def test_next_never_leads_off_the_ui(store: FeatureStore, keys: dict[str, str]) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/elsewhere", "/ui\\@evil", ""):
        answer = client(store).post(LOGIN, data={"key": keys["operator"], "next": target})
        assert answer.headers["location"] == "/ui/", target


def test_tampered_foreign_and_ended_sessions_are_refused(
    store: FeatureStore, keys: dict[str, str]
) -> None:
    c = logged_in(store, keys["operator"])
    token = c.cookies[COOKIE]
    key_id, ends, signature = token.split(".")
    forged = [
        f"{key_id}.{int(ends) + 10**6}.{signature}",  # a longer session, same signature
        f"{key_id}.{ends}.{'0' * 64}",
        Sessions(b"another project's secret").issue(key_id, int(time.time()) + 3600),
        Sessions(store.mask_key()).issue(key_id, int(time.time()) - 1),  # ended
        "not-a-session",
        "x" * 5000,
    ]
    for value in forged:
        other = client(store)
        other.cookies.set(COOKIE, value, path="/ui")
        assert other.get("/ui/").status_code == 303, value[:40]
    model_id = keys["model"].split("_")[1]  # a model key's id, properly signed: not an operator
    other = client(store)
    other.cookies.set(COOKIE, Sessions(store.mask_key()).issue(model_id, 2**40), path="/ui")
    assert other.get("/ui/").status_code == 303


def test_revoking_the_key_ends_its_sessions(store: FeatureStore) -> None:
    credential, key = store.create_operator_credential(description="to revoke")
    c = logged_in(store, key)
    assert c.get("/ui/").status_code == 200
    store.revoke_credential(credential.key_id)
    assert c.get("/ui/").status_code == 303
    assert client(store).post(LOGIN, data={"key": key}).status_code == 401


def test_a_session_ends_when_its_key_expires(store: FeatureStore) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    _, key = store.create_operator_credential(expires_at=soon)
    answer = client(store).post(LOGIN, data={"key": key})
    max_age = int(re.search(r"Max-Age=(\d+)", answer.headers["set-cookie"]).group(1))  # type: ignore[union-attr]
    assert 0 < max_age <= 30  # not the 12 hours of a session: the key ends first


def test_a_bearer_header_opens_the_pages_for_scripts(
    store: FeatureStore, keys: dict[str, str]
) -> None:
    c = client(store)
    ok = c.get("/ui/api/catalog?q=email", headers={"Authorization": f"Bearer {keys['operator']}"})
    assert ok.status_code == 200
    assert [e["name"] for e in ok.json()["entries"]] == ["user_profile:email"]
    refused = c.get("/ui/", headers={"Authorization": f"Bearer {keys['model']}"})
    assert refused.status_code == 403
    assert "--operator" in alert(refused.text)


def test_every_response_has_the_security_headers(store: FeatureStore, keys: dict[str, str]) -> None:
    c = logged_in(store, keys["operator"])
    answers = [
        c.get("/ui/"),
        c.get("/ui/objects/entity/nobody"),
        c.get("/ui/static/ui.css"),
        c.get("/ui/static/nothing.js"),
        client(store).get(LOGIN),
        client(store).post(LOGIN, data={"key": "x"}),
    ]
    for answer in answers:
        assert answer.headers["content-security-policy"] == CSP
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert answers[0].headers["cache-control"] == "no-store"
    assert "immutable" in answers[2].headers["cache-control"]
    assert answers[3].status_code == 404
    html = answers[0].text
    assert "<script>" not in html
    assert " style=" not in html
    assert re.search(r'<script src="/ui/static/ui\.js\?v=[0-9a-f]{12}" defer>', html)


def test_hostile_input_is_shown_as_text_or_refused(
    store: FeatureStore, keys: dict[str, str]
) -> None:
    c = logged_in(store, keys["operator"])
    attack = '"><script>alert(1)</script>'
    page = c.get("/ui/", params={"q": attack, "owner": attack})
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    missing = c.get("/ui/objects/entity/" + "%3Cimg%20src%3Dx%3E")
    assert missing.status_code == 404
    assert "<img src=x>" not in missing.text
    assert c.get("/ui/?offset=abc").status_code == 422
    assert c.get("/ui/?offset=-5").status_code == 422
    assert c.get("/ui/?offset=999999").status_code == 200  # past the end: the last page
    big = client(store).post(LOGIN, content=b"key=" + b"a" * 10_000, headers=FORM)
    assert big.status_code == 413
    odd = client(store).post(LOGIN, content=b"key=\xff\xfe", headers=FORM)
    assert odd.status_code == 400


FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_operator_keys_read_no_features_and_push_nothing(
    store: FeatureStore, keys: dict[str, str]
) -> None:
    ring = store.catalog().keys
    at = datetime.now(UTC)
    assert ring.authenticate_operator(keys["operator"], at).role == "operator"
    with pytest.raises(AccessDeniedError, match="operator's key"):
        ring.authenticate(keys["operator"], at)
    with pytest.raises(AccessDeniedError, match="operator keys cannot push"):
        ring.authenticate_push(keys["operator"], "user_txn_stats", at)
    with pytest.raises(AccessDeniedError, match="the UI needs an operator's key"):
        ring.authenticate_operator(keys["push"], at)


def test_the_catalog_filters_by_tag_owner_kind_entity_and_purpose(
    store: FeatureStore, keys: dict[str, str]
) -> None:
    c = logged_in(store, keys["operator"])

    def names(**params: Any) -> list[str]:
        answer = c.get("/ui/api/catalog", params=params)
        assert answer.status_code == 200
        return [e["name"] for e in answer.json()["entries"]]

    assert names(tag="pii=true") == ["user_profile:email"]
    assert names(tag="pii") == ["user_profile:email"]
    assert names(q="pii") == ["user_profile:email", "no_pii_for_marketing"]
    assert names(purpose="marketing") == ["promo_ranker"]
    assert names(kind="model") == ["fraud_detector", "promo_ranker"]
    assert names(kind="feature_view", entity="merchant") == ["merchant_stats"]
    assert names(owner="accounts@example.com") == ["user_profile_source"]
    assert names(q="velocity spent") == ["user_txn_stats"]  # every word, anywhere
    assert names(q="no such thing") == []
    page = c.get("/ui/", params={"tag": "pii=true"}).text
    assert 'href="/ui/views/user_profile#f-email"' in page


def test_credentials_cli_makes_and_lists_operator_keys(store: FeatureStore) -> None:
    from typer.testing import CliRunner

    from featurestore.cli import app

    repo = str(store.config.repo_path)
    runner = CliRunner()
    made = runner.invoke(app, ["credentials", "create", "--operator", "-r", repo, "--json"])
    assert made.exit_code == 0, made.output
    assert '"role":"operator"' in made.stdout.replace(" ", "")
    both = runner.invoke(app, ["credentials", "create", "--operator", "--model", "x", "-r", repo])
    assert both.exit_code != 0
    assert "exactly one of" in both.output
    listed = runner.invoke(app, ["credentials", "list", "-r", repo])
    assert " operator " in listed.stdout


def test_a_v8_registry_gains_the_role_column(tmp_path: Path) -> None:
    repo = tmp_path / "feature_repo"
    shutil.copytree(
        EXAMPLE_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__", ".featurestore")
    )
    with FeatureStore(repo) as fs:
        fs.apply()
        old, _ = fs.create_credential("fraud_detector")
    db = repo / "data" / "registry.db"
    with sqlite3.connect(db) as conn:  # back to schema v8: no role column
        conn.execute("ALTER TABLE fs_credentials DROP COLUMN role")
        conn.execute("UPDATE fs_meta SET value = '8' WHERE key = 'schema'")
    with FeatureStore(repo) as fs:
        (found,) = fs.registry.credentials.records(fs.project)
        assert (found.key_id, found.role) == (old.key_id, "model")
        operator, _ = fs.create_operator_credential()
        assert operator.role == "operator"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM fs_meta WHERE key = 'schema'").fetchone() == (
            str(SCHEMA_VERSION),
        )


def test_a_page_reads_one_snapshot_however_often_it_asks(store: FeatureStore) -> None:
    """A registry change mid-request must not mix two snapshots into one page."""
    from featurestore.ui.page import PageContext
    from featurestore.ui.render import Renderer
    from featurestore.ui.state import UiState

    state = UiState(store, refresh_seconds=0.0)
    calls: list[object] = []

    def fresh() -> Any:
        calls.append(object())
        return calls[-1]

    state.snapshot = fresh  # type: ignore[method-assign]  # each call: a "new" registry
    ctx = PageContext(state, Renderer("/ui"), None, {}, {})  # type: ignore[arg-type]
    assert ctx.snapshot is ctx.snapshot
    assert len(calls) == 1
    assert PageContext(state, Renderer("/ui"), None, {}, {}).snapshot is not ctx.snapshot  # type: ignore[arg-type]
