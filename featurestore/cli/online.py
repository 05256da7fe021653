"""Online verbs: look features up, serve them over HTTP, clean the online store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from featurestore.cli.common import (
    JsonOption,
    RepoOption,
    echo_json,
    fail,
    handle_errors,
    open_store,
)
from featurestore.errors import (
    EntityInputError,
    FeatureStoreError,
    ServerStartError,
    did_you_mean,
)

online_app = typer.Typer(help="Maintenance of the Redis online store.")


# -- online -------------------------------------------------------------------------


def _entity_rows(
    client: Any, plan: Any, entity: list[str] | None, entities_json: str | None
) -> list[dict[str, Any]]:
    """--entity k=v (one row; values typed by the key's or request field's dtype) or
    --entities JSON."""
    if entities_json is not None:
        try:
            rows = orjson.loads(entities_json)
        except orjson.JSONDecodeError as exc:
            raise EntityInputError(f"--entities is not valid JSON: {exc}") from None
        return rows
    requests = {name: str(dtype) for name, dtype, _ in plan.on_demand.request_fields}
    row: dict[str, Any] = {}
    for item in entity or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise EntityInputError(f"--entity {item!r}: write KEY=VALUE, e.g. user_id=1001.")
        try:
            dtype = plan.key_dtype(key)
        except KeyError:
            dtype = requests.get(key, "")
        if not dtype:
            known = [*plan.join_keys, *requests]
            raise EntityInputError(
                f"--entity {key}: the request needs no such key or request field."
                f"{did_you_mean(key, known)} It needs: {', '.join(known)}."
            )
        row[key] = _typed(key, value, dtype)
    return [row]


def _typed(key: str, value: str, dtype: str) -> Any:
    """A command-line value as ``dtype`` (the lookup checks it again, as any row's)."""
    try:
        if dtype.startswith("int"):
            return int(value)
        if dtype.startswith("float"):
            return float(value)
    except ValueError:
        raise EntityInputError(f"--entity {key}={value}: {key} is {dtype}.") from None
    if dtype == "string":
        return value
    raise EntityInputError(
        f"--entity {key}={value}: {key} is {dtype}, which --entity cannot spell; pass the "
        "rows as JSON with --entities."
    )


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
    with open_store(repo) as store:
        client = store.online_client(api_key=api_key)
        plan = client.plan(model=model, features=feature, full_feature_names=full_feature_names)
        rows = _entity_rows(client, plan, entity, entities_json)
        response = client.get_online_features(
            rows, model=model, features=feature, full_feature_names=full_feature_names
        )
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
    ui: Annotated[bool, typer.Option("--ui", help="Also serve the web UI at /ui.")] = False,
) -> None:
    """Serve online lookups over HTTP: POST /v1/features, /healthz, /readyz, /metrics, /docs."""
    import shutil
    import tempfile

    import uvicorn

    from featurestore.serving.protocol import BoundedHttpToolsProtocol
    from featurestore.serving.workers import reuseport_supported, run_workers

    try:  # fail fast, with the library's message, before any worker starts
        from featurestore.config import load_config

        load_config(repo)
    except FeatureStoreError as exc:
        fail(str(exc))
    os.environ["FEATURESTORE_REPO"] = str(repo.resolve())
    os.environ["FEATURESTORE_MAX_ENTITIES"] = str(max_entities)
    os.environ["FEATURESTORE_REFRESH_SECONDS"] = str(refresh_seconds)
    # Read by each worker's connections (featurestore.serving.protocol).
    os.environ["FEATURESTORE_HEADER_TIMEOUT"] = str(header_timeout)
    os.environ["FEATURESTORE_BODY_TIMEOUT"] = str(body_timeout)
    os.environ["FEATURESTORE_MAX_CONNECTIONS"] = str(max_connections)
    os.environ["FEATURESTORE_UI"] = "1" if ui else "0"
    metrics_dir = None
    if workers > 1:  # workers share metrics through files (prometheus_client multiprocess)
        metrics_dir = tempfile.mkdtemp(prefix="featurestore-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    typer.echo(
        f"Serving {repo.resolve()} on http://{host}:{port} with {workers} worker(s); docs at /docs"
        + (f"; the UI at http://{host}:{port}/ui/" if ui else "")
    )
    options: dict[str, Any] = {
        "app": "featurestore.serving.app:app_from_env",
        "factory": True,
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "http": BoundedHttpToolsProtocol,  # uvicorn has no header or body read timeout
        # No X-Forwarded-* rewriting per request: nothing here reads the client address.
        "proxy_headers": False,
    }
    try:
        if workers > 1 and reuseport_supported():
            # One SO_REUSEPORT socket per worker: the kernel spreads the connections.
            code = run_workers(options, host, port, workers)
            if code:
                raise typer.Exit(code)
        else:
            uvicorn.run(**options, workers=workers)
    except ServerStartError as exc:
        fail(str(exc))
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@online_app.command("cleanup")
@handle_errors
def online_cleanup(repo: RepoOption = Path("."), as_json: JsonOption = False) -> None:
    """Remove the online values of retired versions (retire does it; this catches up)."""
    with open_store(repo) as store:
        removed = store.cleanup_online()
    if as_json:
        echo_json(removed)
        return
    if not removed:
        typer.echo("No retired versions.")
    for label, n in removed.items():
        typer.echo(f"{label}: removed {n:,} online value(s)")
