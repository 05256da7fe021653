"""Shared fixtures: one set of real services per test run, started only when a test asks."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# A throwaway PostgreSQL server for the shared-registry tests (started only when asked for).
pytest_plugins = ["tests.postgres", "tests.ui_repo"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_REPO = ROOT / "feature_repo"


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    """A copy of the example feature repo (definitions only, no data) in a temp folder."""
    target = tmp_path / "feature_repo"
    shutil.copytree(
        EXAMPLE_REPO, target, ignore=shutil.ignore_patterns("data", "__pycache__", ".featurestore")
    )
    return target


@dataclass(frozen=True)
class Services:
    redis_url: str
    kafka_bootstrap: str


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """A real Redis and Kafka-protocol broker on free ports, shared by the whole run."""
    from featurestore import devservices

    state = tmp_path_factory.mktemp("services")
    redis_url = f"redis://127.0.0.1:{devservices.free_port()}/0"
    kafka = f"127.0.0.1:{devservices.free_port()}"
    devservices.up(redis_url, kafka, state)
    try:
        yield Services(redis_url, kafka)
    finally:
        devservices.down(state)


@dataclass(frozen=True)
class RedisCluster:
    """A local Redis Cluster: ``url`` names the first primary (any node is a start-up node)."""

    url: str
    ports: tuple[int, ...]  # primaries
    replica_ports: tuple[int, ...]  # one per primary (which one: CLUSTER NODES)
    state_dir: Path

    def pid(self, port: int) -> int:
        """The pid of the node on ``port`` (to stop it, e.g. for a failover)."""
        path = self.state_dir / "redis-cluster" / f"node-{port}.pid"
        return int(path.read_text().split()[0])


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """3 primaries with 1 replica each (6 redis-server processes) on free consecutive ports,
    shared by the whole run; a test may stop a primary (its replica takes over)."""
    from featurestore import devservices

    state = tmp_path_factory.mktemp("redis-cluster")
    ports = devservices.free_ports(6, cluster_bus=True)
    url = f"redis://127.0.0.1:{ports[0]}/0"
    devservices.up(url, None, state, redis_cluster=3, cluster_replicas=1)
    try:
        yield RedisCluster(url, tuple(ports[:3]), tuple(ports[3:]), state)
    finally:
        devservices.down(state)


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local Spark session for the whole run (starting one takes about 6 s)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need our packages
    session = (
        SparkSession.builder.master("local[2]")
        .appName("featurestore-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "2g")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
