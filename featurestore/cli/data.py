"""Data verbs: training-set builds and the example repo's generated data (the recorded
sets: ``training_sets.py``)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from featurestore.cli.common import (
    JsonOption,
    RepoOption,
    echo_json,
    handle_errors,
    open_store,
    parse_time,
)

if TYPE_CHECKING:
    from featurestore.registry import TrainingSetRecord

# -- data -------------------------------------------------------------------------


@handle_errors
def training_data(
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")],
    entities: Annotated[
        Path | None,
        typer.Option("--entities", "-e", help="Parquet file of entity rows (keys + time)."),
    ] = None,
    spine: Annotated[
        str | None,
        typer.Option(
            "--spine", help="Take the entity rows from this view's own rows (instead of -e)."
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Spine rows from this event time (inclusive).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="Spine rows before this event time (exclusive).")
    ] = None,
    repo: RepoOption = Path("."),
    service: Annotated[str | None, typer.Option(help="Feature service name.")] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name: reads the view versions it is pinned to.")
    ] = None,
    features: Annotated[
        list[str] | None, typer.Option("--feature", "-f", help="view:feature (repeatable).")
    ] = None,
    engine: Annotated[str, typer.Option(help="duckdb (default) or spark.")] = "duckdb",
    timestamp_column: Annotated[
        str, typer.Option(help="Entity time column (UTC; naive times are UTC).")
    ] = "event_timestamp",
    full_feature_names: Annotated[
        bool, typer.Option(help="Name columns view__feature instead of feature.")
    ] = False,
    memory_limit: Annotated[
        str | None, typer.Option(help="DuckDB memory limit, e.g. 2GB; spills to disk beyond.")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Read only offline rows landed by this time (ISO 8601; naive = UTC)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Build a point-in-time correct training set and record it for lineage."""
    import time

    options = {"memory_limit": memory_limit, "progress": not as_json} if engine == "duckdb" else {}
    started = time.perf_counter()
    with open_store(repo) as store:
        result = store.get_training_data(
            entities,
            features=features or None,
            feature_service=service,
            model=model,
            timestamp_column=timestamp_column,
            full_feature_names=full_feature_names,
            engine=store.offline_engine(engine, **options),
            output_path=out,
            as_of=parse_time(as_of, "--as-of"),
            spine=spine,
            start=parse_time(start, "--start"),
            end=parse_time(end, "--end"),
        )
    seconds = time.perf_counter() - started
    record = result.record
    if as_json:
        echo_json({**asdict(record), "seconds": round(seconds, 3)})
        return
    _summary(record, out, seconds)


def _summary(record: TrainingSetRecord, out: Path, seconds: float) -> None:
    typer.echo(
        f"Wrote {record.rows:,} rows with {len(record.features)} features to {out} in "
        f"{seconds:.1f}s ({record.engine}); training set #{record.id} recorded"
        + (f" for model {record.model}." if record.model else ".")
    )
    typer.echo(
        "  reads "
        + ", ".join(f"{k} (offline commit {v})" for k, v in record.offline_manifests.items())
        + (f", as known at {record.as_of.isoformat()}" if record.as_of else "")
    )
    typer.echo(
        f"  fingerprint {record.fingerprint} (`featurestore training-sets rebuild {record.id}` "
        "builds it again exactly)"
    )
    if record.spine:
        read = record.spine
        window = f"[{read.get('start', '-inf')}, {read.get('end', 'inf')})"
        typer.echo(f"  entity rows: {record.entity_rows:,} of spine {read['view']} {window}")


@handle_errors
def generate_data(
    repo: RepoOption = Path("."),
    users: Annotated[int, typer.Option(help="Card holders.")] = 20_000,
    merchants: Annotated[int, typer.Option(help="Merchants.")] = 2_000,
    days: Annotated[int, typer.Option(help="Days of history.")] = 30,
    transactions: Annotated[int, typer.Option(help="Historical transactions.")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data.")] = 7,
    kafka_events: Annotated[
        int, typer.Option("--kafka-events", help="Also produce this many live events to Kafka.")
    ] = 0,
    kafka_only: Annotated[
        bool,
        typer.Option(
            "--kafka-only", help="Only produce the live events (a burst; 1% of them bad)."
        ),
    ] = False,
    amount_scale: Annotated[
        float,
        typer.Option(help="Multiply live events' amounts (a shifted world, to watch drift)."),
    ] = 1.0,
) -> None:
    """Write the example repo's source Parquet (and optionally Kafka events), seeded."""
    from featurestore.config import load_config
    from pipelines.generate_data import GeneratorSettings, generate, produce_events

    config = load_config(repo)
    settings = GeneratorSettings(
        users=users, merchants=merchants, days=days, transactions=transactions, seed=seed
    )
    if kafka_only:
        produce_events(
            config,
            settings,
            kafka_events or 5000,
            bad=0.01,
            amount_scale=amount_scale,
            progress=typer.echo,
        )
        return
    report = generate(config, settings, kafka_events=kafka_events, progress=typer.echo)
    for name, rows in report.items():
        typer.echo(f"  {name}: {rows:,} rows")
