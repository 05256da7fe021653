"""``featurestore dev``: a local Redis (or Redis Cluster) and Kafka-protocol broker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from featurestore.cli.common import (
    JsonOption,
    RepoOption,
    echo_json,
    fail,
    handle_errors,
)

# -- dev services -------------------------------------------------------------------


dev_app = typer.Typer(help="Local Redis (or Redis Cluster) and Kafka-protocol broker.")

ClusterOption = Annotated[
    int | None,
    typer.Option(
        "--redis-cluster",
        metavar="N",
        help="Start a Redis Cluster of N primaries (ports from online_store.redis_url's on) "
        "instead of one Redis. Default: the cluster already recorded, or 3 primaries when "
        "the repo says `online_store.cluster: true`.",
    ),
]
ReplicasOption = Annotated[
    int | None,
    typer.Option("--replicas", help="Replicas per primary for --redis-cluster (0 to 2)."),
]


def _print_services(statuses: list[Any], as_json: bool) -> None:
    if as_json:
        rows = []
        for s in statuses:
            row = {
                "name": s.name,
                "address": s.address,
                "state": s.state,
                "pid": s.pid,
                "log": str(s.log_path),
                "detail": s.detail,
            }
            if s.role is not None:  # Redis Cluster nodes only
                row |= {"role": s.role, "slots": s.slots}
            rows.append(row)
        echo_json(rows)
        return
    width = max(6, *(len(s.name) for s in statuses))
    for s in statuses:
        pid = f"pid {s.pid}" if s.pid else "-"
        typer.echo(f"{s.name:<{width}} {s.state:<9} {s.address:<22} {pid:<11} {s.detail}")


@dev_app.command("up")
@handle_errors
def dev_up(
    repo: RepoOption = Path("."),
    redis_cluster: ClusterOption = None,
    replicas: ReplicasOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a local Redis (or Redis Cluster) and Kafka-protocol broker (idempotent)."""
    from featurestore import devservices
    from featurestore.config import load_config

    config = load_config(repo)
    recorded = devservices.recorded_cluster(config.state_dir)
    if redis_cluster is None and recorded is not None:
        redis_cluster = len(recorded.ports)
        replicas = recorded.replicas_per_primary if replicas is None else replicas
    elif redis_cluster is None and config.redis_cluster:
        redis_cluster = 3
    if replicas and not redis_cluster:
        fail("--replicas needs --redis-cluster N (a standalone Redis has no replicas).")
    statuses = devservices.up(
        config.redis_url,
        config.kafka_bootstrap_servers,
        config.state_dir,
        redis_cluster=redis_cluster or 0,
        cluster_replicas=replicas or 0,
    )
    _print_services(statuses, as_json)
    if redis_cluster and not config.redis_cluster:
        # On stderr, so that --json output stays one JSON document.
        typer.echo(
            "Point the repo at it: set `online_store.cluster: true` in featurestore.yaml "
            f"(`online_store.redis_url` {statuses[0].address} is a start-up node).",
            err=True,
        )


@dev_app.command("down")
@handle_errors
def dev_down(repo: RepoOption = Path("."), as_json: JsonOption = False) -> None:
    """Stop the local services started by `dev up` (every node of a dev cluster)."""
    from featurestore import devservices
    from featurestore.config import load_config

    _print_services(devservices.down(load_config(repo).state_dir), as_json)


@dev_app.command("status")
@handle_errors
def dev_status(repo: RepoOption = Path("."), as_json: JsonOption = False) -> None:
    """Show whether the local services run and answer (each node of a dev cluster)."""
    from featurestore import devservices
    from featurestore.config import load_config

    config = load_config(repo)
    statuses = devservices.status(
        config.redis_url, config.kafka_bootstrap_servers, config.state_dir
    )
    _print_services(statuses, as_json)
    if any(s.state != "running" for s in statuses):
        raise typer.Exit(3)
