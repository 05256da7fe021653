"""Generated feature repos for registry-scale work: ``views`` feature views of 10 Float64
features on one entity, each on its own ParquetSource, and ``models`` models each reading
one feature service of 3 views. Used by ``registry_scale.py`` and by the registry's
bounded-statement test; imports only the standard library.

    write_repo(path, views=1000, models=10000, layout="split")   # 100 views / 1,000 models a file
    write_repo(path, views=1000, models=10000, layout="one-file")
"""

from __future__ import annotations

from pathlib import Path

VIEWS_PER_FILE = 100
MODELS_PER_FILE = 1000
FEATURES = 10

_HEADER = "from featurestore import Entity, FeatureService, FeatureView, Field, Float32, Float64, "
_HEADER += "Int64, Model, ParquetSource\n"
_ENTITY = 'user = Entity(name="user", join_key="user_id", dtype=Int64)\n'


def fields_text(dtype: str) -> str:
    """The 10 features (``Field`` reads the same in featurestore and Feast); f0 is ``dtype``."""
    return ", ".join(
        f'Field(name="f{j}", dtype={dtype if j == 0 else "Float64"})' for j in range(FEATURES)
    )


def view_block(i: int, *, dtype: str = "Float64") -> str:
    fields = fields_text(dtype)
    return (
        f'src_{i} = ParquetSource(name="src_{i}", path="data/src_{i}", '
        'timestamp_field="event_timestamp")\n'
        f'view_{i} = FeatureView(name="view_{i}", entities=["user"], source=src_{i}, '
        f'schema=[{fields}], owner="team-{i % 10}@example.com", tags={{"team": "t{i % 10}"}})\n'
    )


def model_block(i: int, views: int) -> str:
    picks = [(i * 3 + k) % views for k in range(3)]
    refs = ", ".join(f'"view_{v}:f{k}"' for k, v in enumerate(picks))
    return (
        f'svc_{i} = FeatureService(name="svc_{i}", features=[{refs}])\n'
        f'model_{i} = Model(name="model_{i}", feature_services=[svc_{i}], '
        f'purpose="{("fraud", "marketing", "risk")[i % 3]}", owner="ml-{i % 10}@example.com")\n'
    )


def write_repo(
    root: Path,
    *,
    views: int,
    models: int,
    layout: str = "split",
    project: str = "scale",
    registry: str = "data/registry.db",
    changed_view: int | None = None,
) -> Path:
    """Write the repo under ``root`` (its files replaced) and return ``root``.
    ``changed_view``: that view's first feature is Float32 (a one-dtype change)."""
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("*.py"):
        old.unlink()
    (root / "featurestore.yaml").write_text(
        f"project: {project}\nregistry: {registry}\noffline_store:\n  path: data/offline\n"
        "online_store:\n  redis_url: redis://127.0.0.1:6379/0\n"
    )

    def views_text(lo: int, hi: int) -> str:
        return "".join(
            view_block(i, dtype="Float32" if i == changed_view else "Float64")
            for i in range(lo, hi)
        )

    def models_text(lo: int, hi: int) -> str:
        return "".join(model_block(i, views) for i in range(lo, hi))

    if layout == "one-file":
        (root / "repo.py").write_text(
            _HEADER + _ENTITY + views_text(0, views) + models_text(0, models)
        )
        return root
    if layout != "split":
        raise ValueError(f"layout must be 'split' or 'one-file', not {layout!r}")
    (root / "entities.py").write_text(_HEADER + _ENTITY)
    for lo in range(0, views, VIEWS_PER_FILE):
        hi = min(views, lo + VIEWS_PER_FILE)
        (root / f"views_{lo // VIEWS_PER_FILE:04d}.py").write_text(_HEADER + views_text(lo, hi))
    for lo in range(0, models, MODELS_PER_FILE):
        hi = min(models, lo + MODELS_PER_FILE)
        (root / f"models_{lo // MODELS_PER_FILE:04d}.py").write_text(_HEADER + models_text(lo, hi))
    return root


_FEAST_HEADER = (
    "from datetime import timedelta\n"
    "from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType\n"
    "from feast.types import Float32, Float64\n"
)
_FEAST_ENTITY = 'user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)\n'


def feast_view_block(i: int, *, dtype: str = "Float64") -> str:
    fields = fields_text(dtype)
    return (
        f'src_{i} = FileSource(name="src_{i}", path="data/src_{i}.parquet", '
        'timestamp_field="event_timestamp")\n'
        f'view_{i} = FeatureView(name="view_{i}", entities=[user], source=src_{i}, '
        f"ttl=timedelta(days=1), schema=[{fields}], "
        f'owner="team-{i % 10}@example.com", tags={{"team": "t{i % 10}"}})\n'
    )


def feast_service_block(i: int, views: int) -> str:
    picks = [(i * 3 + k) % views for k in range(3)]
    projections = ", ".join(f'view_{v}[["f{k}"]]' for k, v in enumerate(picks))
    return f'svc_{i} = FeatureService(name="svc_{i}", features=[{projections}])\n'


def write_feast_repo(
    root: Path,
    *,
    views: int,
    services: int,
    layout: str = "split",
    project: str = "scale",
    changed_view: int | None = None,
) -> Path:
    """The same views, and one feature service per model, as a Feast 0.67 repo (Feast has no
    model object). Services import the views they read, as Feast repos must."""
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("*.py"):
        old.unlink()
    (root / "feature_store.yaml").write_text(
        f"project: {project}\nregistry: data/registry.db\nprovider: local\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\n"
        "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
    )

    def views_text(lo: int, hi: int) -> str:
        return "".join(
            feast_view_block(i, dtype="Float32" if i == changed_view else "Float64")
            for i in range(lo, hi)
        )

    if layout == "one-file":
        services_text = "".join(feast_service_block(i, views) for i in range(services))
        (root / "repo.py").write_text(
            _FEAST_HEADER + _FEAST_ENTITY + views_text(0, views) + services_text
        )
        return root
    (root / "entities.py").write_text(_FEAST_HEADER + _FEAST_ENTITY)
    view_files = -(-views // VIEWS_PER_FILE)
    for n in range(view_files):
        lo, hi = n * VIEWS_PER_FILE, min(views, (n + 1) * VIEWS_PER_FILE)
        (root / f"views_{n:04d}.py").write_text(
            _FEAST_HEADER + "from entities import user\n" + views_text(lo, hi)
        )
    imports = "".join(f"from views_{n:04d} import *\n" for n in range(view_files))
    for lo in range(0, services, MODELS_PER_FILE):
        hi = min(services, lo + MODELS_PER_FILE)
        text = "".join(feast_service_block(i, views) for i in range(lo, hi))
        (root / f"services_{lo // MODELS_PER_FILE:04d}.py").write_text(
            _FEAST_HEADER + imports + text
        )
    return root
