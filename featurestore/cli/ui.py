"""``featurestore ui``: the web UI, alone (``featurestore serve --ui`` mounts it beside the
API), in the foreground or detached until ``featurestore dev down``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from featurestore.cli.common import RepoOption, fail, handle_errors

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@handle_errors
def ui(
    repo: RepoOption = Path("."),
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (Feast's UI uses 8888 too).")] = 8888,
    refresh_seconds: Annotated[
        float, typer.Option(help="How often to check the registry for changes.")
    ] = 1.0,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", help="Run in the background until `featurestore dev down` stops it."
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve the web UI (read-only, behind an operator's key) at http://HOST:PORT/ui/."""
    from featurestore.config import load_config

    config = load_config(repo)  # fail fast, with the library's message
    url = f"http://{host}:{port}/ui/"
    if host not in LOOPBACK:
        typer.echo(
            f"warning: {host} is not a loopback address; serve the UI over HTTPS (a proxy in "
            "front of it) so the session cookie is never sent in clear.",
            err=True,
        )
    if detach:
        start_detached(repo, config.state_dir, host, port, refresh_seconds)
        typer.echo(
            f"The UI runs at {url} (log: {config.state_dir / 'ui.log'}); "
            "`featurestore dev down` stops it."
        )
        return
    import uvicorn

    os.environ["FEATURESTORE_REPO"] = str(repo.resolve())
    os.environ["FEATURESTORE_REFRESH_SECONDS"] = str(refresh_seconds)
    typer.echo(
        f"The UI for {repo.resolve()} at {url}; log in with an operator's key "
        "(`featurestore credentials create --operator`)."
    )
    uvicorn.run(
        "featurestore.ui.app:standalone_from_env",
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
    )


def start_detached(repo: Path, state_dir: Path, host: str, port: int, refresh: float) -> None:
    """Start ``featurestore ui`` in its own session, recorded in ``ui.pid`` for ``dev down``,
    and wait until it answers (or fail with its log's tail)."""
    import urllib.error
    import urllib.request

    from featurestore.devprocess import PidFile, owned, port_taken, read_pid, spawn, terminate

    state_dir.mkdir(parents=True, exist_ok=True)
    pid_path, log_path = state_dir / "ui.pid", state_dir / "ui.log"
    running = read_pid(pid_path)
    if running is not None and owned(running.pid, running.binary):
        terminate(running.pid, running.binary, 10.0)  # one UI per repo: the new one wins
    if port_taken(host, port):
        fail(f"Port {port} on {host} is taken; pass --port with a free one.")
    cmd = [sys.executable, "-m", "featurestore.cli", "ui", "-r", str(repo.resolve())]
    cmd += ["--host", host, "--port", str(port), "--refresh-seconds", str(refresh)]
    proc = spawn(
        cmd,
        pid_file=PidFile(0, host, port, sys.executable),
        pid_path=pid_path,
        log_path=log_path,
        cwd=Path.cwd(),
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            pid_path.unlink(missing_ok=True)
            fail("The UI did not start:\n" + "\n".join(tail))
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    fail(f"The UI did not answer within 30 s; see {log_path}.")
