"""``featurestore dev``: a local Redis and Kafka-protocol broker for development."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from featurestore.cli.common import (
    JsonOption,
    RepoOption,
    echo_json,
    handle_errors,
)

# -- dev services -------------------------------------------------------------------


dev_app = typer.Typer(help="Local Redis and Kafka-protocol broker for development.")


def _print_services(statuses: list[Any], as_json: bool) -> None:
    if as_json:
        echo_json(
            [
                {
                    "name": s.name,
                    "address": s.address,
                    "state": s.state,
                    "pid": s.pid,
                    "log": str(s.log_path),
                    "detail": s.detail,
                }
                for s in statuses
            ]
        )
        return
    for s in statuses:
        pid = f"pid {s.pid}" if s.pid else "-"
        typer.echo(f"{s.name:<6} {s.state:<9} {s.address:<22} {pid:<11} {s.detail}")


@dev_app.command("up")
@handle_errors
def dev_up(repo: RepoOption = Path("."), as_json: JsonOption = False) -> None:
    """Start a local Redis and Kafka-protocol broker (idempotent)."""
    from featurestore import devservices
    from featurestore.config import load_config

    config = load_config(repo)
    statuses = devservices.up(config.redis_url, config.kafka_bootstrap_servers, config.state_dir)
    _print_services(statuses, as_json)


@dev_app.command("down")
@handle_errors
def dev_down(repo: RepoOption = Path("."), as_json: JsonOption = False) -> None:
    """Stop the local services started by `dev up`."""
    from featurestore import devservices
    from featurestore.config import load_config

    _print_services(devservices.down(load_config(repo).state_dir), as_json)


@dev_app.command("status")
@handle_errors
def dev_status(repo: RepoOption = Path("."), as_json: JsonOption = False) -> None:
    """Show whether the local services run and answer."""
    from featurestore import devservices
    from featurestore.config import load_config

    config = load_config(repo)
    statuses = devservices.status(
        config.redis_url, config.kafka_bootstrap_servers, config.state_dir
    )
    _print_services(statuses, as_json)
    if any(s.state != "running" for s in statuses):
        raise typer.Exit(3)
