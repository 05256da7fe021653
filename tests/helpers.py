"""Shared helpers for tests that need a feature repo on disk.

Usage::

    from tests.helpers import BASE_REPO, write_repo

    repo = write_repo(tmp_path / "repo", BASE_REPO)
    contents = load_repo(repo)

``BASE_REPO`` is a small but complete repo that loads cleanly: two entities,
two Parquet sources, two feature views, two feature services, two models, a
policy and a drift monitor, spread over four files that import each other by
module name (``from entities import user``), as users write them.

What it defines (keep this list in sync when editing it; other tests rely on it):

============  ==================================================================
file          definitions
============  ==================================================================
entities.py   ``user`` (join key ``user_id``, int64), ``merchant`` (``merchant_id``,
              string)
sources.py    ``user_source`` (path ``data/user_stats``), ``merchant_source``
              (path ``data/merchant_stats``, created_timestamp_field ``created``)
views.py      ``user_stats`` [user]: avg_amount float32, txn_count int64, country
              string (tag pii=true), ttl 1 day, owner risk@example.com, tag
              team=risk, expectation avg_amount in [0, 10000];
              ``merchant_stats`` [merchant]: chargeback_rate float64, ttl 30 days
models.py     services ``fraud_features`` (all of both views) and
              ``promo_features`` (user_stats avg_amount, txn_count); models
              ``fraud_model`` (purpose fraud) and ``promo_model`` (purpose
              marketing); policy ``no_pii_for_marketing`` (deny pii=true to
              marketing); drift monitor ``fraud_drift`` on fraud_model
============  ==================================================================
"""

from __future__ import annotations

import os
import socket
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["BASE_REPO", "ONLINE_REPO", "line_of", "online_repo", "replace_once", "write_repo"]


def write_repo(
    path: str | os.PathLike[str],
    files: Mapping[str, str],
    project: str = "demo",
) -> Path:
    """Write a feature repo into ``path`` and return ``path`` (resolved).

    ``featurestore.yaml`` gets ``project: <project>`` and ``registry:
    data/registry.db``; pass ``"featurestore.yaml"`` in ``files`` to write your
    own instead. Every file is dedented (``textwrap.dedent``) and stripped of
    leading blank lines, so line 1 is the first line of text; use
    :func:`line_of` rather than counting lines by hand. Subfolders in file
    names (``"pkg/defs.py"``) are created.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    texts = {"featurestore.yaml": f"project: {project}\nregistry: data/registry.db\n"}
    texts.update(files)
    for name, text in texts.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def line_of(file: str | os.PathLike[str], needle: str) -> int:
    """The 1-based number of the one line of ``file`` containing ``needle``.

    Fails the test if no line or several lines contain it, so an expected
    line number can never silently point at the wrong place.
    """
    lines = Path(file).read_text().splitlines()
    hits = [i for i, line in enumerate(lines, start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits} of {file}, expected exactly one"
    return hits[0]


def replace_once(files: Mapping[str, str], file: str, old: str, new: str) -> dict[str, str]:
    """A copy of ``files`` with ``old`` replaced by ``new`` in ``file``.

    ``old`` must occur exactly once (after dedenting), so an edit that no
    longer matches the base repo fails loudly instead of testing nothing.
    """
    text = textwrap.dedent(files[file]).lstrip("\n")
    count = text.count(old)
    assert count == 1, f"{old!r} occurs {count} times in {file}, expected exactly once"
    return {**files, file: text.replace(old, new)}


BASE_REPO: dict[str, str] = {
    "entities.py": '''
        """Who the features describe."""

        from featurestore import Entity, Int64, String

        user = Entity(name="user", join_key="user_id", dtype=Int64, description="A card holder.")
        merchant = Entity(name="merchant", join_key="merchant_id", dtype=String)
    ''',
    "sources.py": '''
        """Where the rows come from."""

        from featurestore import ParquetSource

        user_source = ParquetSource(name="user_source", path="data/user_stats")
        merchant_source = ParquetSource(
            name="merchant_source",
            path="data/merchant_stats",
            created_timestamp_field="created",
        )
    ''',
    "views.py": '''
        """Feature views."""

        from datetime import timedelta

        from entities import merchant, user
        from sources import merchant_source, user_source

        from featurestore import FeatureView, Field, Float32, Float64, Int64, String, expect_between

        user_stats = FeatureView(
            name="user_stats",
            entities=[user],
            source=user_source,
            schema=[
                Field(name="avg_amount", dtype=Float32, description="Mean transaction amount."),
                Field(name="txn_count", dtype=Int64),
                Field(name="country", dtype=String, tags={"pii": "true"}),
            ],
            ttl=timedelta(days=1),
            expectations=[expect_between("avg_amount", 0, 10_000)],
            owner="risk@example.com",
            tags={"team": "risk"},
        )

        merchant_stats = FeatureView(
            name="merchant_stats",
            entities=[merchant],
            source=merchant_source,
            schema=[Field(name="chargeback_rate", dtype=Float64)],
            ttl=timedelta(days=30),
        )
    ''',
    "models.py": '''
        """Feature services, models, policies and drift monitors."""

        from views import merchant_stats, user_stats

        from featurestore import (
            DriftMonitor,
            FeatureMatch,
            FeatureService,
            Model,
            ModelMatch,
            Policy,
        )

        fraud_features = FeatureService(
            name="fraud_features",
            features=[user_stats, merchant_stats],
        )
        promo_features = FeatureService(
            name="promo_features",
            features=[user_stats[["avg_amount", "txn_count"]]],
        )

        fraud_model = Model(
            name="fraud_model",
            feature_services=[fraud_features],
            purpose="fraud",
            owner="risk-ml@example.com",
        )
        promo_model = Model(
            name="promo_model",
            feature_services=[promo_features],
            purpose="marketing",
            owner="growth@example.com",
        )

        no_pii_for_marketing = Policy(
            name="no_pii_for_marketing",
            effect="deny",
            features=FeatureMatch(tags={"pii": "true"}),
            models=ModelMatch(purposes=["marketing"]),
        )

        fraud_drift = DriftMonitor(
            name="fraud_drift",
            model=fraud_model,
            features=["user_stats:avg_amount", "merchant_stats:chargeback_rate"],
        )
    ''',
}


def change_credit_limit_dtype(repo: Path) -> None:
    """In a copy of the example repo: user_profile's credit_limit Float64 -> float32 (a new
    version of the view)."""
    replace_in_file(
        repo / "user_profile.py",
        'Field(name="credit_limit", dtype=Float64)',
        'Field(name="credit_limit", dtype="float32")',
    )


def replace_in_file(path: Path, old: str, new: str) -> None:
    """Edit a repo file; fails unless ``old`` occurs exactly once, so no edit silently misses."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))


# A repo for the online store's tests: every dtype the online store encodes, an entity
# pair (composite key), a view without TTL and one that is offline only.
ONLINE_REPO: dict[str, str] = {
    "defs.py": """
        from datetime import timedelta

        from featurestore import (
            Array,
            Bool,
            Bytes,
            Entity,
            FeatureService,
            FeatureView,
            Field,
            Float32,
            Float64,
            Int32,
            Int64,
            Model,
            ParquetSource,
            String,
            UnixTimestamp,
        )

        user = Entity(name="user", join_key="user_id", dtype=Int64)
        merchant = Entity(name="merchant", join_key="merchant_id", dtype=String)
        src = ParquetSource(name="src", path="data/src")

        user_stats = FeatureView(
            name="user_stats",
            entities=[user],
            source=src,
            schema=[
                Field(name="avg_amount", dtype=Float64),
                Field(name="txn_count", dtype=Int64),
                Field(name="country", dtype=String),
            ],
            ttl=timedelta(hours=1),
        )
        user_profile = FeatureView(
            name="user_profile",
            entities=[user],
            source=src,
            schema=[
                Field(name="embedding", dtype=Array(Float32)),
                Field(name="signup", dtype=UnixTimestamp),
                Field(name="vip", dtype=Bool),
                Field(name="blob", dtype=Bytes),
                Field(name="score32", dtype=Float32),
                Field(name="level", dtype=Int32),
            ],
        )
        merchant_stats = FeatureView(
            name="merchant_stats",
            entities=[merchant],
            source=src,
            schema=[Field(name="chargeback_rate", dtype=Float64)],
            ttl=timedelta(days=7),
        )
        pair_stats = FeatureView(
            name="pair_stats",
            entities=[user, merchant],
            source=src,
            schema=[Field(name="pair_count", dtype=Int64)],
            ttl=timedelta(days=1),
        )
        offline_only = FeatureView(
            name="offline_only",
            entities=[user],
            source=src,
            schema=[Field(name="label_rate", dtype=Float64)],
            online=False,
        )

        fraud = FeatureService(
            name="fraud",
            features=[user_stats, merchant_stats[["chargeback_rate"]], pair_stats],
        )
        fraud_model = Model(
            name="fraud_model", feature_services=[fraud], purpose="fraud", owner="risk@x.com"
        )
    """,
}


def online_repo(
    path: Path, redis_url: str, project: str = "shop", *, cluster: bool = False
) -> Path:
    """ONLINE_REPO in ``path``, on the given Redis (a Redis Cluster with ``cluster``)."""
    config = (
        f"project: {project}\nregistry: data/registry.db\nonline_store:\n  redis_url: {redis_url}\n"
        f"  cluster: {'true' if cluster else 'false'}\n"
    )
    return write_repo(path, {**ONLINE_REPO, "featurestore.yaml": config})


def process_gone(pid: int) -> bool:
    """True if the process has exited (a zombie awaiting its parent counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def accepting(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def scale_repo(root: Path, **options: Any) -> Path:
    """A generated repo of ``views`` views and ``models`` models (benchmarks/_registry_repo.py)."""
    benchmarks = str(Path(__file__).resolve().parent.parent / "benchmarks")
    if benchmarks not in sys.path:
        sys.path.insert(0, benchmarks)
    from _registry_repo import write_repo as write_generated

    return write_generated(root, **options)
