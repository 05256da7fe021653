"""The public surface and the weight of importing it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import featurestore

HEAVY = ("pyspark", "pandas", "great_expectations", "duckdb", "pyarrow")


def test_exported_members_are_exactly_all() -> None:
    public = {name for name in vars(featurestore) if not name.startswith("_")}
    modules = {n for n in public if type(getattr(featurestore, n)).__name__ == "module"}
    assert set(featurestore.__all__) - {"__version__"} == public - modules
    assert (
        featurestore.__all__ == sorted(featurestore.__all__, key=str.lower)
        or sorted(featurestore.__all__) == featurestore.__all__
    )


def test_importing_the_library_and_cli_pulls_in_nothing_heavy() -> None:
    code = (
        "import sys, featurestore, featurestore.cli, featurestore.registry, featurestore.repo;"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_loading_the_example_repo_pulls_in_nothing_heavy() -> None:
    from tests.conftest import EXAMPLE_REPO

    code = (
        "import sys; from featurestore.repo import load_repo;"
        f"load_repo({str(EXAMPLE_REPO)!r});"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_the_online_read_path_pulls_in_nothing_heavy(tmp_path: Path, services: Any) -> None:
    """Importing the client and the server, and doing a lookup, loads no heavy module."""
    from tests.helpers import online_repo

    repo = online_repo(tmp_path / "repo", services.redis_url, "light")
    code = (
        "import sys; import featurestore.online.client, featurestore.serving.app;"
        "from featurestore import FeatureStore;"
        f"s = FeatureStore({str(repo)!r}); s.apply();"
        "s.get_online_features([{'user_id': 1}], features=['user_stats:avg_amount']);"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_python_mode_on_demand_lookups_pull_in_nothing_heavy(tmp_path: Path, services: Any) -> None:
    """A python-mode on-demand feature is computed without pandas or pyarrow."""
    from featurestore import FeatureStore
    from tests.helpers import write_repo
    from tests.test_on_demand import DEFS

    config = (
        f"project: light_od\nregistry: data/registry.db\n"
        f"online_store:\n  redis_url: {services.redis_url}\n"
    )
    repo = write_repo(tmp_path / "repo", {"defs.py": DEFS, "featurestore.yaml": config})
    with FeatureStore(repo) as store:
        store.apply()
    code = (
        "import sys; from featurestore import FeatureStore;"
        f"s = FeatureStore({str(repo)!r});"
        "r = s.get_online_features([{'user_id': 1, 'amount': 2.0}],"
        " features=['amount_vs_avg:amount_ratio', 'amount_vs_avg:is_large']);"
        "assert r.status_dict()['amount_ratio'] == ['present'], r.to_json_dict();"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
