"""The online store seam: a store is passed in and every online part uses the one given.

The store under test is the real Redis store on a database the repo's config does not
name, recording which of its methods each part called: if any part built its own
connection from the config, the values would land in (or be read from) database 0.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from featurestore import FeatureStore
from featurestore.config import load_config
from featurestore.errors import RepoConfigError
from featurestore.online.redis_store import RedisOnlineStore
from featurestore.online.serving_log import ServingLog, decode_batch
from featurestore.online.store import online_store_from_config
from featurestore.serving.app import create_app
from tests.helpers import online_repo
from tests.test_online_store import USER_STATS, ago, user_stats

pytestmark = [
    pytest.mark.services,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
]
_projects = itertools.count()


class RecordingStore(RedisOnlineStore):
    """The Redis store, noting each call of the seam's methods."""

    calls: list[str]

    def read(self, commands: Sequence[Any]) -> list[Any]:
        self.calls.append(f"read:{len(commands)}")
        return super().read(commands)

    async def read_async(self, commands: Sequence[Any]) -> list[Any]:
        self.calls.append(f"read_async:{len(commands)}")
        return await super().read_async(commands)

    def write_table(self, layout: Any, table: Any) -> Any:
        self.calls.append("write_table")
        return super().write_table(layout, table)

    def append_served(self, batch: Mapping[bytes, Sequence[bytes]], maxlen: int) -> None:
        self.calls.append("append_served")
        super().append_served(batch, maxlen)


@pytest.fixture
def other_db(services: Any) -> Iterator[tuple[str, RecordingStore]]:
    url = services.redis_url.rsplit("/", 1)[0] + "/6"
    store = RecordingStore.from_url(url)
    store.calls = []
    yield url, store
    store.close()


@pytest.fixture
def repo(tmp_path: Path, services: Any) -> Path:
    # The config names database 0; the injected store is on database 6.
    return online_repo(tmp_path / "repo", services.redis_url, f"seam{next(_projects)}")


def test_the_feature_store_writes_and_reads_through_the_store_it_is_given(
    repo: Path, services: Any, other_db: tuple[str, RecordingStore]
) -> None:
    url, injected = other_db
    with FeatureStore(repo, online_store=injected) as store:
        store.apply()
        store.write_online("user_stats", user_stats([1, 2], [ago(minutes=1)] * 2, [1.0, 2.0]))
        rows = [{"user_id": 1}, {"user_id": 2}, {"user_id": 3}]
        sync = store.get_online_features(rows, features=USER_STATS)
        async_ = asyncio.run(store.get_online_features_async(rows, features=USER_STATS))
        prefix = f"fs:{store.project}:".encode()
    assert sync.to_dict()["avg_amount"] == [1.0, 2.0, None]
    assert async_.to_json() == sync.to_json()
    # One round trip per lookup, one HMGET per row: through the store given, nothing else.
    assert injected.calls == ["write_table", "read:3", "read_async:3"]
    assert len(redis.Redis.from_url(url).keys(prefix + b"*")) == 2
    assert redis.Redis.from_url(services.redis_url).keys(prefix + b"*") == []
    # The store passed in is its owner's: closing the FeatureStore left it usable.
    assert injected.ping()


def test_the_server_serves_from_the_store_it_is_given(
    repo: Path, services: Any, other_db: tuple[str, RecordingStore]
) -> None:
    _url, injected = other_db
    with FeatureStore(repo, online_store=injected) as store:
        store.apply()
        store.write_online("user_stats", user_stats([1], [ago(minutes=1)], [7.0]))
        _credential, key = store.create_credential("fraud_model")
        injected.calls.clear()
        app = create_app(feature_store=store, store=injected)
        with TestClient(app) as http:
            response = http.post(
                "/v1/features",
                json={"features": USER_STATS, "entities": [{"user_id": 1}]},
                headers={"Authorization": f"Bearer {key}"},
            )
            ready = http.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["values"] == [7.0]
    assert ready.json()["redis"] == "ok"
    assert injected.calls[0] == "read_async:1"  # then the readiness PING
    assert injected.ping()  # the app did not close what it was given


def test_the_serving_log_appends_and_drift_reads_through_the_store(
    other_db: tuple[str, RecordingStore],
) -> None:
    url, injected = other_db
    key = f"fs:seam{next(_projects)}:@served:m".encode()
    log = ServingLog(injected, interval=0.01)
    for i in range(3):
        log.offer(key, b"\x91%c" % i)  # a msgpack list of one small int
    log.flush()
    assert log.written == 3
    assert "append_served" in injected.calls
    assert redis.Redis.from_url(url).xlen(key) >= 1
    entries = injected.read_served(key, 0, 100)
    assert sorted(s for e in entries for s in decode_batch(e)) == [[0], [1], [2]]
    redis.Redis.from_url(url).delete(key)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("reddis://127.0.0.1:1/0", r"scheme 'reddis', which no online store serves\. Did you "),
        ("http://127.0.0.1:1/0", r"Known schemes: redis://, rediss://, unix://"),
    ],
)
def test_an_unknown_online_store_is_a_config_error_naming_what_is_known(
    tmp_path: Path, url: str, message: str
) -> None:
    config = load_config(online_repo(tmp_path / "repo", url))
    with pytest.raises(RepoConfigError, match=message):
        online_store_from_config(config)
    with pytest.raises(RepoConfigError, match=r"Unknown online store 'rediss'\. Did you mean"):
        online_store_from_config(load_config(online_repo(tmp_path / "ok", "redis://h/0")), "rediss")


def test_clients_sharing_a_store_look_up_from_threads_each_with_its_own_event_loop(
    repo: Path, other_db: tuple[str, RecordingStore]
) -> None:
    """Every client of a FeatureStore shares its store: asyncio lookups from loops in
    different threads must each get their own rows (one connection per loop)."""
    _url, injected = other_db
    with FeatureStore(repo, online_store=injected) as store:
        store.apply()
        users = list(range(20))
        store.write_online("user_stats", user_stats(users, [ago(minutes=1)] * 20, users))
        clients = [store.online_client(), store.online_client()]
        answers: dict[int, list[bool]] = {0: [], 1: []}

        def lookups(n: int) -> None:
            async def rounds() -> None:
                for _ in range(50):
                    got = await asyncio.gather(
                        *(
                            clients[n].get_online_features_async(
                                [{"user_id": u}], features=USER_STATS
                            )
                            for u in users
                        )
                    )
                    answers[n] += [
                        r.to_dict()["avg_amount"] == [float(u)]
                        for r, u in zip(got, users, strict=True)
                    ]
                    await asyncio.sleep(0)
                await clients[n].aclose()

            asyncio.run(asyncio.wait_for(rounds(), 60))

        threads = [threading.Thread(target=lookups, args=(n,)) for n in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
    assert [len(answers[0]), len(answers[1])] == [1000, 1000]
    assert all(answers[0])
    assert all(answers[1])
