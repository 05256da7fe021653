"""The ``featurestore`` command: one thin function per verb (parse, call the library, print).

Every read verb takes ``--json`` for scripts. Errors print the library's
message (what, which object, what to do) and exit 1; ``plan
--detailed-exitcode`` exits 2 when changes are pending, like ``terraform plan``.

This module only assembles the app: each command lives in the module of its group and is
registered here, explicitly (the command modules import ``common``, never this).
"""

from __future__ import annotations

import os
import sys

import typer

from featurestore.cli import (
    audit,
    credentials,
    data,
    describe,
    dev,
    drift,
    lineage,
    materialize,
    migrate,
    offline,
    online,
    registry,
    stream,
    training_sets,
    ui,
)
from featurestore.urls import redact_logs

__all__ = ["app", "main"]

app = typer.Typer(
    name="featurestore",
    help="Versioned features from Spark and Kafka into Redis and Parquet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Top-level verbs, in the order `--help` lists them.
app.command()(registry.plan)
app.command()(registry.apply)
app.command()(registry.versions)
app.command()(describe.describe)
app.command("list")(registry.list_objects)
app.command()(registry.resolve)
app.command()(registry.retire)
app.command()(registry.promote)
app.command("get-online")(online.get_online)
app.command()(online.serve)
app.command()(ui.ui)
app.command()(materialize.materialize)
app.command()(materialize.runs)
app.command("training-data")(data.training_data)
app.command("generate-data")(data.generate_data)
app.command("import-feast")(migrate.import_feast)

# Command groups (in the order `--help` has always listed them).
app.add_typer(dev.dev_app, name="dev")
app.add_typer(online.online_app, name="online")
app.add_typer(credentials.credentials_app, name="credentials")
app.add_typer(drift.drift_app, name="drift")
app.add_typer(lineage.lineage_app, name="lineage")
app.add_typer(stream.stream_app, name="stream")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(training_sets.training_sets_app, name="training-sets")
app.add_typer(offline.offline_app, name="offline")


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
