"""The Feast side's shared repo: the same 'stats' view over one Parquet file, for the
``_feast_*.py`` helpers. Runs in Feast's own virtualenv; imports only Feast."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

FEATURES = [f"f{i}" for i in range(5)]

_YAML = """\
project: {project}
registry: {root}/registry.db
provider: local
online_store:
{online}
offline_store:
  type: {offline}
entity_key_serialization_version: 3
"""


def write_config(
    root: Path,
    project: str,
    *,
    redis: str | None,
    offline: str = "file",
    redis_type: str = "redis",
) -> None:
    """feature_store.yaml: Redis online store at ``redis`` (host:port[,db=N]; a cluster's
    nodes comma-separated with ``redis_type="redis_cluster"``) or SQLite."""
    online = (
        f'  type: redis\n  redis_type: {redis_type}\n  connection_string: "{redis}"'
        if redis
        else f"  type: sqlite\n  path: {root}/online.db"
    )
    root.mkdir(parents=True, exist_ok=True)
    (root / "feature_store.yaml").write_text(
        _YAML.format(project=project, root=root, online=online, offline=offline)
    )


def stats_definitions(
    features_file: str, *, ttl: timedelta, online: bool, created: bool = True
) -> list[Any]:
    """The entity and the 5-float 'stats' view over ``features_file``."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
    source = FileSource(
        name="stats_source",
        path=str(Path(features_file).resolve()),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp" if created else "",
    )
    view = FeatureView(
        name="stats",
        entities=[entity],
        ttl=ttl,
        schema=[Field(name=f, dtype=Float64) for f in FEATURES],
        source=source,
        online=online,
    )
    return [entity, view]
