"""``featurestore drift``: check served features against training data, watch, and report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from featurestore.cli.common import JsonOption, RepoOption, echo_json, handle_errors, open_store

drift_app = typer.Typer(help="Drift monitors: served features against their training data.")

_COLORS = {"ok": typer.colors.GREEN, "warn": typer.colors.YELLOW, "drift": typer.colors.RED}


def _measures(f: dict[str, Any]) -> str:
    parts = []
    for name in ("psi", "js"):
        if name in f:
            parts.append(f"{name} {f[name]:.3f}")
    if "null_rate" in f:
        n = f["null_rate"]
        parts.append(f"nulls {n['reference']:.1%} -> {n['served']:.1%}")
    if "age_seconds" in f:
        parts.append(f"age p50 {f['age_seconds']['p50']:.0f}s")
    if "non_finite_rate" in f:
        n = f["non_finite_rate"]
        parts.append(f"non-finite {n['reference']:.1%} -> {n['served']:.1%}")
    if "unseen_share" in f:
        parts.append(f"unseen values {f['unseen_share']:.1%}")
    if "reason" in f:
        parts.append(f["reason"])
    return ", ".join(parts)


def _show(detail: dict[str, Any]) -> None:
    status = detail["status"]
    typer.secho(
        f"{detail['model']}: {status}  ({detail.get('lookups', 0)} sampled lookups in "
        f"{detail.get('window_seconds', '-')} s, reference training set "
        f"#{detail.get('training_set') or '-'})",
        fg=_COLORS.get(status),
        bold=True,
    )
    if "reason" in detail:
        typer.echo(f"  {detail['reason']}")
    for name, f in detail.get("features", {}).items():
        typer.secho(f"  {f['status']:<12}", fg=_COLORS.get(f["status"]), nl=False)
        typer.echo(f"{name:<38} n={f['samples']:<6} {_measures(f)}")
    skew = detail.get("skew") or {}
    if "error" in skew:
        typer.echo(f"  skew check failed: {skew['error']}")
    bad = {k: v for k, v in skew.items() if isinstance(v, dict) and v.get("mismatches")}
    if bad:
        typer.secho("  training/serving skew (served vs offline at lookup time):", fg="yellow")
        for name, v in bad.items():
            typer.echo(
                f"    {name}: {v['mismatches']} of {v['checked']} differ, e.g. {v['examples'][0]}"
            )
    elif skew:
        checked = sum(v.get("checked", 0) for v in skew.values() if isinstance(v, dict))
        typer.echo(f"  no training/serving skew in {checked} sampled values")


@drift_app.command("check")
@handle_errors
def check(
    model: Annotated[
        str | None, typer.Argument(help="One model (default: every monitored one).")
    ] = None,
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Check once, publish the status to lookups, and record it. Exit 3 if any model drifts."""
    from featurestore.drift.monitor import run_checks

    with open_store(repo) as store:
        details = run_checks(store, model)
    if as_json:
        echo_json(details)
    else:
        if not details:
            typer.echo("No DriftMonitor in the repo.")
        for detail in details:
            _show(detail)
    if any(d["status"] == "drift" for d in details):
        raise typer.Exit(3)


@drift_app.command("monitor")
@handle_errors
def monitor(
    interval: Annotated[float, typer.Option(help="Seconds between checks.")] = 30.0,
    repo: RepoOption = Path("."),
) -> None:
    """Check every INTERVAL seconds until stopped; print each model's status when it changes."""
    from featurestore.drift.monitor import monitor_forever

    last: dict[str, str] = {}
    with open_store(repo) as store:
        typer.echo(f"Monitoring drift of project '{store.project}' every {interval:g} s")
        try:
            for details in monitor_forever(store, interval):
                for d in details:
                    if last.get(d["model"]) != d["status"]:
                        _show(d)
                        last[d["model"]] = d["status"]
        except KeyboardInterrupt:
            typer.echo("stopped")


@drift_app.command("status")
@handle_errors
def status(
    model: Annotated[str, typer.Argument(help="The model.")],
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """The model's status from its last check, as lookups see it (with every feature)."""
    with open_store(repo) as store:
        client = store.online_client()
        detail = client.drift_status(model, detail=True)
        client.close()
    if as_json:
        echo_json(detail)
    elif "features" in detail:
        _show(detail)
    else:
        typer.echo(f"{model}: {detail['status']} ({detail.get('reason', '')})")


@drift_app.command("history")
@handle_errors
def history(
    model: Annotated[str, typer.Argument(help="The model.")],
    limit: Annotated[int, typer.Option(help="Newest N checks.")] = 20,
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Past checks of a model, newest first."""
    with open_store(repo) as store:
        store.snapshot().model(model)
        checks = store.registry.drift.checks(store.project, model, limit=limit)
    if as_json:
        echo_json(
            [
                {
                    "id": c.id,
                    "status": c.status,
                    "checked_at": c.checked_at,
                    "training_set": c.training_set,
                    "detail": c.detail,
                }
                for c in checks
            ]
        )
        return
    if not checks:
        typer.echo(f"No drift checks of '{model}' yet: run `featurestore drift check`.")
    for c in checks:
        flagged = {
            k: v["status"]
            for k, v in c.detail.get("features", {}).items()
            if v["status"] in ("warn", "drift")
        }
        typer.secho(
            f"#{c.id}  {c.checked_at.isoformat(timespec='seconds')}  {c.status:<7}",
            fg=_COLORS.get(c.status),
            nl=False,
        )
        typer.echo(
            f" {c.detail.get('lookups', 0)} lookups  "
            + ", ".join(f"{k} {v}" for k, v in flagged.items())
        )
