"""``featurestore stream``: run the Kafka consumer, and look at its dead letters and status.

``featurestore stream [VIEW ...]`` runs the consumer (``run`` is implied);
``stream status``, ``stream dlq``, ``stream backfill`` and ``stream create-topic`` are the
other verbs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from featurestore.cli.common import (
    JsonOption,
    RepoOption,
    default_command,
    echo_json,
    handle_errors,
    open_store,
)
from featurestore.errors import MissingExtraError

stream_app = typer.Typer(
    cls=default_command("run"),
    help="Kafka streaming: consume views' topics into the online and offline stores.",
)


def _pipeline(module: str = "admin") -> Any:
    """A Kafka-side module of ``featurestore.streaming``: ``consumer`` or ``admin`` (looking
    at and repairing a stream); without the kafka extra, an error saying how to install it."""
    import importlib

    try:
        return importlib.import_module(f"featurestore.streaming.{module}")
    except ImportError as exc:
        raise MissingExtraError("kafka", "kafka") from exc


def _streaming_views(store: Any, views: list[str] | None) -> list[str]:
    return views or store.snapshot().streaming_views()


@stream_app.command("run")
@handle_errors
def run(
    views: Annotated[
        list[str] | None, typer.Argument(help="Views to stream (default: every streaming view).")
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(help="Consumer group (default: featurestore.<project>.<view>.v<N>)."),
    ] = None,
    flush_seconds: Annotated[
        float, typer.Option(help="How often events and feature rows land offline.")
    ] = 5.0,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics on this port (+1 per view).")
    ] = None,
    repo: RepoOption = Path("."),
) -> None:
    """Consume until SIGTERM or Ctrl-C (which land the current batch and commit)."""
    with open_store(repo) as store:
        names = _streaming_views(store, views)
        if not names:
            typer.echo("No streaming views (views whose source is a KafkaSource) in this repo.")
            return
        stats = store.stream(
            names,
            group=group,
            flush_seconds=flush_seconds,
            metrics_port=metrics_port,
            progress=typer.echo,
        )
    for name, s in zip(names, stats, strict=True):
        typer.echo(
            f"{name}: {s.accepted:,} events accepted, {s.dead_letters:,} dead letters, "
            f"{s.offline_rows:,} feature rows landed offline"
        )


@stream_app.command("status")
@handle_errors
def status(
    view: Annotated[str | None, typer.Argument(help="Only this view.")] = None,
    as_json: JsonOption = False,
    repo: RepoOption = Path("."),
) -> None:
    """Consumers of this machine (rate, freshness, dead letters) and each group's lag."""
    stream = _pipeline()
    with open_store(repo) as store:
        names = _streaming_views(store, [view] if view else None)
        out = [stream.group_status(store, name) for name in names]
    if as_json:
        echo_json(out)
        return
    for s in out:
        lag = ", ".join(f"p{p}={n:,}" for p, n in s["lag"].items()) or "no committed offsets"
        typer.echo(f"{s['view']}  group {s['group']}  lag: {lag}  (total {s['total_lag']:,})")
        if not s["consumers"]:
            typer.echo("  no running consumer on this machine")
        for c in s["consumers"]:
            fresh = c["freshness_ms"]
            typer.echo(
                f"  pid {c['pid']}: partitions {c['partitions']}, {c['events_per_s']:,.0f} "
                f"events/s, {c['accepted']:,} accepted, {c['dead_letters']:,} dead letters, "
                f"freshness p50 {fresh['p50']} ms p99 {fresh['p99']} ms, "
                f"updated {time.time() - c['updated']:.0f}s ago"
            )


@stream_app.command("create-topic")
@handle_errors
def create_topic(
    view: Annotated[str, typer.Argument(help="The streaming view whose topic to create.")],
    partitions: Annotated[
        int, typer.Option(help="At least as many as the consumers you will run.")
    ] = 4,
    repo: RepoOption = Path("."),
) -> None:
    """Create a streaming view's topic (and its dead-letter topic) if it does not exist."""
    stream = _pipeline()
    with open_store(repo) as store:
        created = stream.create_topic(store, view, partitions)
        _v, _n, source = stream.stream_view(store, view)
    typer.echo(
        f"Created topic '{source.topic}' ({partitions} partitions)"
        if created
        else f"Topic '{source.topic}' exists already"
    )


@stream_app.command("dlq")
@handle_errors
def dlq(
    view: Annotated[str | None, typer.Argument(help="Only this view's topic.")] = None,
    limit: Annotated[int, typer.Option(help="The newest N dead letters per topic.")] = 20,
    reason: Annotated[
        str | None,
        typer.Option(help="Only reasons starting with this (late, future, too large, ...)."),
    ] = None,
    as_json: JsonOption = False,
    repo: RepoOption = Path("."),
) -> None:
    """Recent dead letters, one per id (a crash may send one twice): reason, partition
    and offset, and the original event (truncated ones say their original size)."""
    stream = _pipeline()
    with open_store(repo) as store:
        names = _streaming_views(store, [view] if view else None)
        letters = stream.recent_dead_letters(store, names, limit=limit)
    if reason:
        letters = [d for d in letters if d["reason"].startswith(reason)]
    if as_json:
        echo_json(letters)
        return
    if not letters:
        typer.echo("No dead letters.")
    for d in letters:
        extra = ""
        if d["truncated"]:
            extra += f"  (truncated: {d['original_size']:,} bytes, sha256 {d['sha256']})"
        if d["repeats"]:
            extra += f"  (sent {d['repeats'] + 1} times)"
        typer.echo(
            f"{d['id'] or d['topic'] + '/' + str(d['partition']) + '/' + str(d['offset'])}  "
            f"{d['reason']}{extra}\n    {d['value'][:200]}"
        )


@stream_app.command("repair")
@handle_errors
def repair(
    view: Annotated[str, typer.Argument(help="The streaming view.")],
    as_json: JsonOption = False,
    repo: RepoOption = Path("."),
) -> None:
    """Remove what events from the future left (rows past now + the source's
    max_future_skew, offline and online) and reset the watermarks they poisoned. Stop the
    view's consumers first."""
    from featurestore.streaming.processor import format_us

    stream = _pipeline()
    with open_store(repo) as store:
        report = stream.repair_future(store, view)
    if as_json:
        echo_json(
            {
                "view": view,
                "bound_us": report.bound_us,
                "feature_rows_removed": report.feature_rows_removed,
                "events_removed": report.events_removed,
                "entities_reset": report.entities_reset,
                "watermarks": {
                    str(p): {"before": b, "after": a} for p, (b, a) in report.watermarks.items()
                },
            }
        )
        return
    if not report.changed:
        typer.echo(f"{view}: nothing past {format_us(report.bound_us)}; nothing to repair.")
        return
    typer.echo(
        f"{view}: removed {report.feature_rows_removed:,} feature rows and "
        f"{report.events_removed:,} logged events past {format_us(report.bound_us)}; "
        f"{report.entities_reset:,} entities' online values reset to their newest sane row."
    )
    for p, (before, after) in sorted(report.watermarks.items()):
        shown = format_us(after) if after is not None else "none (no sane event logged)"
        typer.echo(f"  partition {p}: watermark {format_us(before or 0)} -> {shown}")
    typer.echo(
        "Events refused as late meanwhile are in the dead-letter topic (`featurestore stream "
        "dlq --reason late`); produce them again to count them."
    )


@stream_app.command("backfill")
@handle_errors
def backfill(
    view: Annotated[str, typer.Argument(help="The streaming view.")],
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="log: the events the stream landed; source: the KafkaSource's batch_source.",
        ),
    ] = "source",
    repo: RepoOption = Path("."),
) -> None:
    """Compute the view's rows on Spark from historical events (the same window
    definitions as the stream) and commit them to its offline table."""
    with open_store(repo) as store:
        result = store.backfill(view, source=source, progress=typer.echo)
    typer.echo(orjson.dumps(result).decode())
