"""``featurestore lineage``: where a feature comes from and goes, what a model was trained
on and serves, and OpenLineage export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from featurestore.cli.common import (
    JsonOption,
    RepoOption,
    echo_json,
    handle_errors,
    open_store,
    parse_time,
)

lineage_app = typer.Typer(help="Lineage: sources, versions, runs, training sets, models.")


def _answer(repo: Path, query: Callable[..., dict[str, Any]], subject: str) -> dict[str, Any]:
    """A lineage query (``queries.feature_lineage`` or ``model_lineage``) on the repo."""
    with open_store(repo) as store:
        return query(
            store.registry,
            store.snapshot(),
            store.config.offline_store_path,
            subject,
            store.config.policy_default,
        )


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _source(source: dict[str, Any]) -> str:
    if source.get("type") == "kafka":
        history = source.get("history")
        tail = f" (history: {history.get('path')})" if history else ""
        return f"kafka topic {source.get('topic')}{tail}"
    return f"{source.get('type')} {source.get('path', source.get('name'))}"


def _computed(on_demand: dict[str, Any]) -> str:
    """Where an on-demand feature comes from: it has no source or offline data."""
    inputs = ", ".join([*on_demand["inputs"], *on_demand["request_fields"]])
    return (
        f"computed at request time ({on_demand['mode']} mode, function "
        f"{on_demand['function']}) from {inputs}"
    )


def _known(ts: dict[str, Any]) -> str:
    """How a training set chose what it read: as known at a time, entity rows of a spine."""
    out = f"  as known at {_when(ts['as_of'])}" if ts.get("as_of") else ""
    spine = ts.get("spine")
    if spine:
        out += f"  spine {spine['view']} [{spine.get('start', '-inf')}, {spine.get('end', 'inf')})"
    return out


def _run_line(run: dict[str, Any]) -> str:
    rows = run["rows_online"] if run["rows_online"] is not None else run["rows_offline"]
    return (
        f"run #{run['id']} v{run['version']} {run['status']:<9} finished "
        f"{_when(run['finished_at'])}  rows read {run['rows_read']}, written {rows}  "
        f"({run['engine']}, code {run['code_version'] or '-'})"
    )


def _offline(state: dict[str, Any]) -> str:
    text = f"offline manifest {state['manifest']} ({state['rows']:,} rows)"
    stream = state.get("stream")
    if stream:
        offsets = ", ".join(f"p{p}@{o}" for p, o in sorted(stream["offsets"].items()))
        text += f", landed to offsets {offsets}, newest event {_when(stream['newest_event'])}"
    return text


@lineage_app.command("feature")
@handle_errors
def feature(
    ref: Annotated[str, typer.Argument(help="VIEW:FEATURE, or VIEW@vN:FEATURE for one version.")],
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """A feature's sources, versions, materialization runs, training sets and models."""
    from featurestore.lineage.queries import feature_lineage

    found = _answer(repo, feature_lineage, ref)
    if as_json:
        echo_json(found)
        return
    typer.secho(f"{found['feature']}  (project {found['project']})", bold=True)
    typer.echo("versions:")
    for v in found["versions"]:
        how = v["aggregation"] or v["transformation"]
        head = (
            f"  v{v['version']}  {v['status']:<8} {v['dtype']:<10} since {_when(v['created_at'])}"
        )
        if v.get("on_demand"):
            typer.echo(f"{head}  {_computed(v['on_demand'])}")
            continue
        typer.echo(f"{head}  from {_source(v['source'])}" + (f"  ({how})" if how else ""))
        typer.echo(f"      {_offline(v['offline'])}")
    typer.echo("materialization runs (newest first):")
    for run in found["materialization_runs"][:10] or [None]:
        typer.echo(f"  {_run_line(run)}" if run else "  none")
    typer.echo("training sets:")
    for ts in found["training_sets"][:10] or [None]:
        typer.echo(
            f"  #{ts['id']} {ts['model'] or '(no model)'}  {_when(ts['created_at'])}  "
            f"{ts['rows']:,} rows{_known(ts)}  {', '.join(ts['features'])}"
            if ts
            else "  none"
        )
    typer.echo("models:")
    for m in found["models"] or [None]:
        if m is None:
            typer.echo("  none")
            continue
        decision = (
            f"{m['decision']}" + (f" by policy {m['rule']}" if m.get("rule") else " (default)")
            if "decision" in m
            else "not served"
        )
        typer.echo(
            f"  {m['model']:<20} serves {', '.join(m['serves']) or '-'}  trained on "
            f"{', '.join(m['trained_on']) or '-'}  {decision}"
        )


@lineage_app.command("model")
@handle_errors
def model(
    name: Annotated[str, typer.Argument(help="The model.")],
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Every feature version a model serves and was trained on, and where each came from."""
    from featurestore.lineage.queries import model_lineage

    found = _answer(repo, model_lineage, name)
    if as_json:
        echo_json(found)
        return
    typer.secho(
        f"model {found['model']}  (purpose {found['purpose']}, owner {found['owner']}, "
        f"project {found['project']})",
        bold=True,
    )
    typer.echo(f"serves ({', '.join(found['feature_services'])}):")
    width = max((len(s["feature"]) for s in found["serves"]), default=0)
    for s in found["serves"]:
        run = s["last_materialization"]
        if s.get("on_demand"):
            typer.echo(f"  {s['feature']:<{width}}  {s['decision']:<5} {_computed(s['on_demand'])}")
            continue
        typer.echo(
            f"  {s['feature']:<{width}}  {s['decision']:<5} from {_source(s['source'])}; "
            + (f"last run #{run['id']} {_when(run['finished_at'])}; " if run else "")
            + _offline(s["offline"])
        )
    typer.echo("trained on (newest first):")
    for ts in found["training_sets"][:10] or [None]:
        typer.echo(
            f"  #{ts['id']}  {_when(ts['created_at'])}  {ts['rows']:,} rows  engine {ts['engine']}"
            f"  manifests {ts['offline_manifests']}{_known(ts)}  -> "
            f"{ts['output_path'] or '(in memory)'}"
            if ts
            else "  no training set recorded"
        )
    if found["skew"]:
        typer.secho("version skew against the newest training set:", fg=typer.colors.YELLOW)
        for s in found["skew"]:
            typer.echo(f"  {s['feature']}: serves {s['serves']}, trained on {s['trained_on']}")
    elif found["training_sets"]:
        typer.echo("no version skew: it serves the versions it was last trained on")
    typer.echo(f"active API keys: {', '.join(found['api_keys']) or 'none'}")
    drift = found["drift"]
    if drift:
        flagged = ", ".join(f"{k} {v}" for k, v in drift["flagged"].items())
        typer.echo(
            f"drift: {drift['status']} at {_when(drift['checked_at'])} against training set "
            f"#{drift['reference_training_set']}" + (f" ({flagged})" if flagged else "")
        )
    else:
        typer.echo("drift: never checked (`featurestore drift check`)")


@lineage_app.command("export")
@handle_errors
def export(
    out: Annotated[
        Path | None, typer.Option(help="Write JSON lines here (default: standard output).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only runs started at or after.")] = None,
    repo: RepoOption = Path("."),
) -> None:
    """OpenLineage run events (JSON lines) of materialization runs and training sets."""
    from featurestore.lineage.openlineage import run_events

    with open_store(repo) as store:
        events = list(
            run_events(
                store.registry,
                store.snapshot(),
                store.config.repo_path,
                store.config.kafka_bootstrap_servers,
                parse_time(since, "--since"),
            )
        )
    lines = b"".join(orjson.dumps(e) + b"\n" for e in events)
    if out is None:
        typer.echo(lines.decode(), nl=False)
        return
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(lines)
    tmp.replace(out)  # never a half-written export
    typer.echo(f"Wrote {len(events)} OpenLineage events to {out}", err=True)
