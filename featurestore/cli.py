"""The ``featurestore`` command: one thin function per verb (parse, call the library, print).

Every read verb takes ``--json`` for scripts. Errors print the library's
message (what, which object, what to do) and exit 1; ``plan
--detailed-exitcode`` exits 2 when changes are pending, like ``terraform plan``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import orjson
import typer
from typer.core import TyperGroup

from featurestore.errors import (
    EntityInputError,
    FeatureStoreError,
    InvalidReferenceError,
    ObjectNotFound,
    did_you_mean,
)
from featurestore.urls import redact, redact_logs

app = typer.Typer(
    name="featurestore",
    help="Versioned features from Spark and Kafka into Redis and Parquet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dev_app = typer.Typer(help="Local Redis and Kafka-protocol broker for development.")
app.add_typer(dev_app, name="dev")
online_app = typer.Typer(help="Maintenance of the Redis online store.")
app.add_typer(online_app, name="online")

RepoOption = Annotated[
    Path,
    typer.Option(
        "--repo",
        "-r",
        envvar="FEATURESTORE_REPO",
        help="Feature repo folder (holds featurestore.yaml).",
        show_default=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

F = TypeVar("F", bound=Callable[..., Any])


def default_command(name: str) -> type[TyperGroup]:
    """A command group whose bare form runs ``name``: `featurestore stream VIEW` is
    `featurestore stream run VIEW`."""

    class DefaultCommand(TyperGroup):
        def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
            if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
                args = [name, *args]
            return super().parse_args(ctx, args)

    return DefaultCommand


def _fail(message: str, code: int = 1) -> None:
    # Messages quote URLs, and third-party errors inside them too: redact all of it.
    typer.secho(f"error: {redact(message)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Print a FeatureStoreError's message instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FeatureStoreError as exc:
            _fail(str(exc))

    return wrapper  # type: ignore[return-value]


def _echo_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode())


def _store(repo: Path):
    from featurestore.store import FeatureStore

    return FeatureStore(repo)


# -- plan / apply ---------------------------------------------------------------


@app.command()
@handle_errors
def plan(
    repo: RepoOption = Path("."),
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help="Exit 2 when changes are pending, 0 when none."),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show unchanged too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show what `apply` would change, object by object and field by field."""
    result = _store(repo).plan()
    if as_json:
        _echo_json(result.to_json())
    else:
        typer.echo(result.render(verbose=verbose))
    if detailed_exitcode and result.has_changes:
        raise typer.Exit(2)


@app.command()
@handle_errors
def apply(repo: RepoOption = Path("."), as_json: JsonOption = False) -> None:
    """Make the registry match the repo (atomic, idempotent)."""
    store = _store(repo)

    def progress(change: Any) -> None:
        if not as_json:
            typer.echo(f"  applied {change.summary()}")

    result = store.apply(on_change=progress)
    if as_json:
        _echo_json({**result.plan.to_json(), "apply_id": result.apply_id, "serial": result.serial})
    elif result.apply_id is None:
        typer.echo("No changes. The registry matches the repo.")
    else:
        notes = [n for c in result.plan.changes for n in c.notes]
        for note in notes:
            typer.echo(f"  note: {note}")
        typer.echo(
            f"Applied {len(result.plan.pending)} change(s) to project '{store.project}' "
            f"(registry serial {result.serial})."
        )


# -- registry reads ---------------------------------------------------------------


@app.command()
@handle_errors
def versions(
    view: Annotated[str, typer.Argument(help="Feature view name.")],
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """List every version of a feature view: status, schema, and the models pinned to it."""
    from featurestore.offline.table import OfflineTable

    store = _store(repo)
    snapshot = store.snapshot()
    rows = []
    for vv in store.versions(view):
        offline = OfflineTable(
            store.config.offline_store_path / store.project / view / f"v{vv.version}"
        ).manifest()
        rows.append(
            {
                "version": f"v{vv.version}",
                "status": vv.status,
                "created_at": vv.created_at.isoformat(timespec="seconds"),
                "retired_at": vv.retired_at.isoformat(timespec="seconds")
                if vv.retired_at
                else None,
                "fingerprint": vv.fingerprint,
                "features": {n: str(d) for n, d in vv.feature_dtypes.items()},
                "models": snapshot.models_pinned_to(view, vv.version),
                "offline_rows": offline.rows,
                "offline_commit": offline.sequence,
            }
        )
    if as_json:
        _echo_json({"view": view, "versions": rows})
        return
    head = snapshot.heads.get(("feature_view", view))
    latest = head.version if head is not None and head.status == "active" else None
    typer.echo(f"Feature view '{view}' in project '{store.project}':")
    for row in rows:
        mark = " (latest)" if row["version"] == f"v{latest}" else ""
        models = f"  models: {', '.join(row['models'])}" if row["models"] else ""
        data = (
            f"offline {row['offline_rows']:,} rows (commit {row['offline_commit']})"
            if row["offline_commit"]
            else "no offline data yet"
        )
        typer.echo(
            f"  {row['version']}{mark}  {row['status']}  created {row['created_at']}  {data}"
            f"{models}"
        )
        features = ", ".join(f"{n} {d}" for n, d in row["features"].items())
        typer.echo(f"      {features}")


@app.command()
@handle_errors
def describe(
    name: Annotated[str, typer.Argument(help="Object name, or VIEW@vN for one view version.")],
    repo: RepoOption = Path("."),
    kind: Annotated[str | None, typer.Option(help="Kind, when a name is used twice.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show an object's current definition and its revision history."""
    store = _store(repo)
    snapshot = store.snapshot()
    if "@v" in name:
        view, _, version = name.partition("@v")
        if not version.isdigit():
            raise InvalidReferenceError(
                f"Cannot parse {name!r}; write VIEW@vN, e.g. user_profile@v1."
            )
        vv = snapshot.view_version(view, int(version))
        payload: dict[str, Any] = {
            "kind": "feature_view_version",
            "name": vv.label,
            "status": vv.status,
            "fingerprint": vv.fingerprint,
            "spec": vv.spec,
            "models": snapshot.models_pinned_to(view, vv.version),
        }
    else:
        matches = [
            head
            for (k, n), head in snapshot.heads.items()
            if n == name and (kind is None or k == kind)
        ]
        if not matches:
            names = {n for (_, n) in snapshot.heads}
            raise ObjectNotFound(
                f"No object named '{name}' in project '{store.project}'."
                f"{did_you_mean(name, names)} `featurestore list` shows them all."
            )
        if len(matches) > 1:
            kinds = ", ".join(sorted(h.kind for h in matches))
            raise ObjectNotFound(f"'{name}' names several objects ({kinds}); pass --kind.")
        head = matches[0]
        history = store.registry.history(store.project, head.kind, head.name)
        payload = {
            "kind": head.kind,
            "name": head.name,
            "status": head.status,
            "revision": head.revision,
            "version": head.version,
            "spec": head.spec,
            "history": [
                {
                    "revision": r.revision,
                    "version": r.version,
                    "created_at": r.created_at.isoformat(timespec="seconds"),
                    "location": r.location,
                }
                for r in history
            ],
        }
    if as_json:
        _echo_json(payload)
        return
    typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2, default=str).decode())


@app.command("list")
@handle_errors
def list_objects(
    kind: Annotated[str | None, typer.Argument(help="Only this kind, e.g. feature_view.")] = None,
    repo: RepoOption = Path("."),
    retired: Annotated[bool, typer.Option(help="Include retired objects.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List registered objects."""
    snapshot = _store(repo).snapshot()
    rows = [
        {"kind": h.kind, "name": h.name, "status": h.status, "version": h.version}
        for (_, _), h in sorted(snapshot.heads.items())
        if (kind is None or h.kind == kind) and (retired or h.status == "active")
    ]
    if as_json:
        _echo_json(rows)
        return
    for row in rows:
        version = f"@v{row['version']}" if row["version"] else ""
        status = "" if row["status"] == "active" else f"  ({row['status']})"
        typer.echo(f"{row['kind']:<16} {row['name']}{version}{status}")


@app.command()
@handle_errors
def resolve(
    refs: Annotated[
        list[str] | None,
        typer.Argument(help="view:feature, view@vN:feature or feature service names."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Resolve what this model reads.")] = None,
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Show which view version each reference reads."""
    snapshot = _store(repo).snapshot()
    if model:
        resolved = snapshot.resolve_model(model)
    elif refs:
        resolved = snapshot.resolve_all(refs)
    else:
        _fail("give references to resolve or --model NAME.", 2)
        return
    if as_json:
        _echo_json([{"ref": str(r), "dtype": str(r.dtype)} for r in resolved])
        return
    for r in resolved:
        typer.echo(f"{r}  {r.dtype}")


@app.command()
@handle_errors
def retire(
    view_version: Annotated[str, typer.Argument(help="VIEW@vN, e.g. user_profile@v1.")],
    repo: RepoOption = Path("."),
) -> None:
    """Stop serving an old version of a view (refused while a model is pinned to it)."""
    view, _, version = view_version.partition("@v")
    if not version.isdigit():
        raise InvalidReferenceError(
            f"Cannot parse {view_version!r}; write VIEW@vN, e.g. user_profile@v1. To retire a "
            "whole view, remove it from the repo and run `featurestore apply`."
        )
    vv = _store(repo).retire(view, int(version))
    typer.echo(
        f"Retired {vv.label} and removed its online values. Its offline data is kept until "
        "deleted explicitly."
    )


@app.command()
@handle_errors
def promote(
    model: Annotated[str, typer.Argument(help="Model name.")],
    repo: RepoOption = Path("."),
) -> None:
    """Re-register a model on the latest versions of the views it reads."""
    pins = _store(repo).promote(model)
    typer.echo(f"Model '{model}' now reads " + ", ".join(f"{v}@v{n}" for v, n in pins.items()))


# -- online -------------------------------------------------------------------------


def _entity_rows(
    client: Any, plan: Any, entity: list[str] | None, entities_json: str | None
) -> list[dict[str, Any]]:
    """--entity k=v (one row; values typed by the key's dtype) or --entities JSON."""
    if entities_json is not None:
        try:
            rows = orjson.loads(entities_json)
        except orjson.JSONDecodeError as exc:
            raise EntityInputError(f"--entities is not valid JSON: {exc}") from None
        return rows
    row: dict[str, Any] = {}
    for item in entity or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise EntityInputError(f"--entity {item!r}: write KEY=VALUE, e.g. user_id=1001.")
        try:
            dtype = plan.key_dtype(key)
        except KeyError:
            raise EntityInputError(
                f"--entity {key}: the request needs no such key.{did_you_mean(key, plan.join_keys)}"
                f" It needs: {', '.join(plan.join_keys)}."
            ) from None
        if dtype.startswith("int"):
            try:
                row[key] = int(value)
            except ValueError:
                raise EntityInputError(f"--entity {key}={value}: {key} is {dtype}.") from None
        else:
            row[key] = value
    return [row]


@app.command("get-online")
@handle_errors
def get_online(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name.")] = None,
    feature: Annotated[
        list[str] | None,
        typer.Option("--feature", "-f", help="Feature reference or service name (repeat)."),
    ] = None,
    entity: Annotated[
        list[str] | None,
        typer.Option("--entity", "-e", help="KEY=VALUE of one entity row (repeat per key)."),
    ] = None,
    entities_json: Annotated[
        str | None,
        typer.Option("--entities", help="JSON rows, e.g. '[{\"user_id\": 1001}]'."),
    ] = None,
    full_feature_names: Annotated[
        bool, typer.Option("--full-feature-names", help="Name outputs view__feature.")
    ] = False,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", envvar="FEATURESTORE_API_KEY", help="Look up as this key's model."
        ),
    ] = None,
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Look up online features, as a model or prediction service would."""
    with _store(repo) as store:
        client = store.online_client(api_key=api_key)
        request = {"model": model, "features": feature, "full_feature_names": full_feature_names}
        plan = client.plan(**request)
        rows = _entity_rows(client, plan, entity, entities_json)
        response = client.get_online_features(rows, **request)
        client.close()
    if as_json:
        typer.echo(response.to_json_text(indent=True))
        return
    times = response.event_times()
    for r, row in enumerate(response.entities):
        typer.secho(", ".join(f"{k}={v}" for k, v in row.items()), bold=True)
        width = max(len(n) for n in response.feature_names)
        for name, ref, values, statuses in zip(
            response.feature_names, plan.refs, response.values, response.statuses, strict=True
        ):
            when = times[name][r]
            shown = "" if statuses[r] == "missing" else repr(values[r])
            typer.echo(
                f"  {name:<{width}}  {shown:<20} {statuses[r]:<8} "
                f"{when.isoformat() if when else '':<33} {ref}"
            )


@app.command()
def serve(
    repo: RepoOption = Path("."),
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (Feast's feature server uses 6566 too).")] = 6566,
    workers: Annotated[int, typer.Option(help="Worker processes (about one per core).")] = 1,
    max_entities: Annotated[
        int, typer.Option(help="Most entity rows one request may ask for (413 above).")
    ] = 1000,
    refresh_seconds: Annotated[
        float, typer.Option(help="How often to check the registry for changes.")
    ] = 1.0,
    header_timeout: Annotated[
        float,
        typer.Option(help="Seconds a client has to send a request's line and headers (408)."),
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a client has to send a request's body (408).")
    ] = 10.0,
    max_connections: Annotated[
        int, typer.Option(help="Open connections per worker; requests past it get 503.")
    ] = 1000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve online lookups over HTTP: POST /v1/features, /healthz, /readyz, /metrics, /docs."""
    import shutil
    import tempfile

    import uvicorn

    from featurestore.serving.protocol import BoundedHttpToolsProtocol

    try:  # fail fast, with the library's message, before any worker starts
        from featurestore.config import load_config

        load_config(repo)
    except FeatureStoreError as exc:
        _fail(str(exc))
    os.environ["FEATURESTORE_REPO"] = str(repo.resolve())
    os.environ["FEATURESTORE_MAX_ENTITIES"] = str(max_entities)
    os.environ["FEATURESTORE_REFRESH_SECONDS"] = str(refresh_seconds)
    # Read by each worker's connections (featurestore.serving.protocol).
    os.environ["FEATURESTORE_HEADER_TIMEOUT"] = str(header_timeout)
    os.environ["FEATURESTORE_BODY_TIMEOUT"] = str(body_timeout)
    os.environ["FEATURESTORE_MAX_CONNECTIONS"] = str(max_connections)
    metrics_dir = None
    if workers > 1:  # workers share metrics through files (prometheus_client multiprocess)
        metrics_dir = tempfile.mkdtemp(prefix="featurestore-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    typer.echo(
        f"Serving {repo.resolve()} on http://{host}:{port} with {workers} worker(s); docs at /docs"
    )
    try:
        uvicorn.run(
            "featurestore.serving.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,
            http=BoundedHttpToolsProtocol,  # uvicorn has no header or body read timeout
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@online_app.command("cleanup")
@handle_errors
def online_cleanup(repo: RepoOption = Path("."), as_json: JsonOption = False) -> None:
    """Remove the online values of retired versions (retire does it; this catches up)."""
    with _store(repo) as store:
        removed = store.cleanup_online()
    if as_json:
        _echo_json(removed)
        return
    if not removed:
        typer.echo("No retired versions.")
    for label, n in removed.items():
        typer.echo(f"{label}: removed {n:,} online value(s)")


# -- materialization ----------------------------------------------------------------


def _parse_time(value: str | None, option: str) -> Any:
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise EntityInputError(
            f"{option} {value!r} is not an ISO date or time, e.g. 2026-11-01 or "
            "2026-11-01T12:00:00Z (times without a zone are UTC)."
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@app.command()
@handle_errors
def materialize(
    views: Annotated[
        list[str] | None, typer.Argument(help="Views to materialize (default: every batch view).")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Window start, inclusive (default: all history).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="Window end, exclusive (default: now).")
    ] = None,
    incremental: Annotated[
        bool,
        typer.Option("--incremental", help="Start each view where its last successful run ended."),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="spark, local (in-process) or auto: in-process for small windows when "
            "spark.master is local, else Spark."
        ),
    ] = "auto",
    repo: RepoOption = Path("."),
) -> None:
    """Run the job: source -> validate -> offline store and online store; record the run."""
    if incremental and start is not None:
        raise EntityInputError("--incremental starts at each view's watermark; drop --start.")

    def show(message: str) -> None:
        typer.echo(message)

    with _store(repo) as store:
        # Each engine imports its own libraries: without the spark extra, `--engine local`
        # runs and `--engine spark` says which extra to install (MissingExtraError).
        runs = store.materialize(
            views or None,
            start=_parse_time(start, "--start"),
            end=_parse_time(end, "--end"),
            incremental=incremental,
            engine=engine,
            progress=show,
        )
    if not runs:
        typer.echo("Nothing to do: every view is up to date.")


@app.command()
@handle_errors
def runs(
    view: Annotated[str | None, typer.Argument(help="Only this view's runs.")] = None,
    limit: Annotated[int, typer.Option(help="Newest N runs.")] = 20,
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Materialization runs (lineage): window, rows, validation, code version, status."""
    with _store(repo) as store:
        records = store.registry.runs(store.project, view, limit=limit)
    if as_json:
        _echo_json([asdict(r) for r in records])
        return
    if not records:
        typer.echo("No materialization runs yet. Run `featurestore materialize`.")
        return
    for r in records:
        window = (
            f"{r.window_start.isoformat() if r.window_start else 'beginning'} .. "
            f"{r.window_end.isoformat()}"
        )
        color = {"succeeded": typer.colors.GREEN, "failed": typer.colors.RED}.get(r.status)
        typer.secho(f"run {r.id}  {r.label}  {r.status}", fg=color, bold=True)
        typer.echo(f"  window     {window}")
        typer.echo(
            f"  rows       read {r.rows_read if r.rows_read is not None else '-'}, offline "
            f"{r.rows_offline if r.rows_offline is not None else '-'}, online "
            f"{r.rows_online if r.rows_online is not None else '-'}"
        )
        if r.validation is not None:
            failed = [e["expectation"] for e in r.validation["expectations"] if not e["success"]]
            verdict = "passed" if r.validation["success"] else "failed: " + "; ".join(failed)
            typer.echo(f"  validation {verdict} ({r.validation['report']})")
        typer.echo(f"  sources    {len(r.sources)} file(s); code {r.code_version or 'unknown'}")
        typer.echo(f"  engine     {r.engine or 'unknown'}")
        started = r.started_at.isoformat(timespec="seconds") if r.started_at else "?"
        finished = r.finished_at.isoformat(timespec="seconds") if r.finished_at else "-"
        typer.echo(f"  time       {started} .. {finished} by {r.started_by}")
        if r.error:
            typer.echo(f"  error      {r.error.splitlines()[0]}")


# -- data -------------------------------------------------------------------------


@app.command("training-data")
@handle_errors
def training_data(
    entities: Annotated[
        Path, typer.Option("--entities", "-e", help="Parquet file of entity rows (keys + time).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")],
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
    as_json: JsonOption = False,
) -> None:
    """Build a point-in-time correct training set and record it for lineage."""
    import time

    store = _store(repo)
    options = {"memory_limit": memory_limit, "progress": not as_json} if engine == "duckdb" else {}
    started = time.perf_counter()
    result = store.get_training_data(
        entities,
        features=features or None,
        feature_service=service,
        model=model,
        timestamp_column=timestamp_column,
        full_feature_names=full_feature_names,
        engine=store.offline_engine(engine, **options),
        output_path=out,
    )
    seconds = time.perf_counter() - started
    record = result.record
    if as_json:
        _echo_json({**asdict(record), "seconds": round(seconds, 3)})
        return
    typer.echo(
        f"Wrote {record.rows:,} rows with {len(record.features)} features to {out} in "
        f"{seconds:.1f}s ({record.engine}); training set #{record.id} recorded"
        + (f" for model {model}." if model else ".")
    )
    typer.echo(
        "  reads "
        + ", ".join(f"{k} (offline commit {v})" for k, v in record.offline_manifests.items())
    )


@app.command("training-sets")
@handle_errors
def training_sets(
    repo: RepoOption = Path("."),
    model: Annotated[str | None, typer.Option(help="Only this model's.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Which data trained which model: recorded training-set builds, newest first."""
    store = _store(repo)
    records = store.registry.training_sets(store.project, model=model)
    if as_json:
        _echo_json([asdict(r) for r in records])
        return
    for r in records:
        when = r.created_at.isoformat(timespec="seconds") if r.created_at else "-"
        typer.echo(
            f"#{r.id}  {when}  model={r.model or '-'}  rows={r.rows:,}  engine={r.engine}  "
            f"entities={r.entity_fingerprint[:12]}  -> {r.output_path or '(in memory)'}"
        )
        typer.echo(f"      {', '.join(r.features)}")


@app.command("generate-data")
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


# -- dev services -------------------------------------------------------------------


def _print_services(statuses: list[Any], as_json: bool) -> None:
    if as_json:
        _echo_json(
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


from featurestore import cli_audit as _cli_audit  # noqa: E402,F401  (registers `audit`)
from featurestore import cli_credentials as _cli_credentials  # noqa: E402,F401
from featurestore import cli_drift as _cli_drift  # noqa: E402,F401
from featurestore import cli_lineage as _cli_lineage  # noqa: E402,F401
from featurestore import cli_migrate as _cli_migrate  # noqa: E402,F401
from featurestore import cli_stream as _cli_stream  # noqa: E402,F401  (registers `stream`)


def main() -> None:
    # Spark and Kafka clients log noisily; keep the CLI's output for people.
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    redact_logs()
    try:
        app(prog_name="featurestore")
    except BrokenPipeError:
        # `featurestore ... | head`: the reader left; end quietly, as Unix tools do.
        # (Not SIGPIPE's default action: that would kill servers on a closed socket.)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)


if __name__ == "__main__":  # pragma: no cover
    # Run the imported module's app: `stream` registers itself on that one, not __main__'s.
    from featurestore.cli import main as _main

    sys.exit(_main())
