"""The registry's lineage as OpenLineage run events (spec 2-0-2), for Marquez, DataHub and
other tools that consume them.

Jobs per project (namespace ``featurestore://<project>``):

- ``materialize.<view>``: one run per materialization run; inputs are the source (a
  Parquet path, namespace ``file``; or a Kafka topic, namespace ``kafka://<brokers>``),
  the output is the view version (``<view>@v<N>``, with its schema).
- ``push.<view>``: one run per view version and minute of pushes (no inputs: a service
  computed the rows);
- ``training_set.<model>`` (``training_set.adhoc`` without a model): one run per build;
  inputs are the view versions read (with the offline manifest read), the output is the
  written file (or ``training_set/<id>`` when it stayed in memory).

Each run gives a START and a COMPLETE (or FAIL) event, with stable run ids (UUID v5 of
the project and the record id): exporting twice sends the same events, which consumers
deduplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from featurestore.urls import redact

SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
SCHEMA_FACET = (
    "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"
)
PRODUCER = "https://github.com/featurestore/featurestore"
_RUN_FACET = f"{PRODUCER}/blob/main/docs/governance.md#openlineage"


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _run_id(project: str, kind: str, record_id: Any) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"featurestore://{project}/{kind}/{record_id}"))


def _facet(schema: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": schema, **fields}


def _source_dataset(source: dict[str, Any], repo: Path, brokers: str) -> dict[str, Any] | None:
    if source.get("type") == "kafka":
        return {
            "namespace": redact(f"kafka://{source.get('bootstrap_servers') or brokers}"),
            "name": source["topic"],
        }
    if "path" in source:
        path = Path(source["path"])
        return {"namespace": "file", "name": str(path if path.is_absolute() else repo / path)}
    return None


def _view_dataset(project: str, snapshot: Any, view: str, version: int) -> dict[str, Any]:
    dataset: dict[str, Any] = {
        "namespace": f"featurestore://{project}",
        "name": f"{view}@v{version}",
    }
    vv = snapshot.versions.get(view, {}).get(version)
    if vv is not None:
        dataset["facets"] = {
            "schema": _facet(
                SCHEMA_FACET,
                fields=[{"name": f["name"], "type": f["dtype"]} for f in vv.version_spec["schema"]],
            )
        }
    return dataset


def _event(
    kind: str, at: datetime | None, run_id: str, job: str, project: str, **parts: Any
) -> dict[str, Any]:
    return {
        "eventType": kind,
        "eventTime": _time(at),
        "run": {
            "runId": run_id,
            **({"facets": parts.pop("run_facets")} if "run_facets" in parts else {}),
        },
        "job": {"namespace": f"featurestore://{project}", "name": job},
        "inputs": parts.get("inputs", []),
        "outputs": parts.get("outputs", []),
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
    }


def _training_set_facet(ts: Any) -> dict[str, Any]:
    """What a training-set build read and how it chose its rows (as of, spine)."""
    return _facet(
        _RUN_FACET,
        id=ts.id,
        model=ts.model,
        features=list(ts.features),
        entity_rows=ts.entity_rows,
        rows=ts.rows,
        entity_fingerprint=ts.entity_fingerprint,
        engine=ts.engine,
        fingerprint=ts.fingerprint,
        as_of=ts.as_of.isoformat() if ts.as_of else None,
        spine=ts.spine,
    )


def run_events(
    registry: Any, snapshot: Any, repo: Path, brokers: str, since: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """START and COMPLETE/FAIL events of every materialization run and training-set
    build of the project (started at or after ``since``), oldest first."""
    project = snapshot.project
    for run in reversed(registry.runs.records(project)):
        if since is not None and run.started_at and run.started_at < since:
            continue
        vv = snapshot.versions.get(run.view, {}).get(run.version)
        source = vv.version_spec.get("source", {}) if vv else {}
        inputs = [d for d in [_source_dataset(source, repo, brokers)] if d]
        if run.engine == "push":  # rows a service pushed: no source was read
            inputs = []
        elif source.get("type") == "kafka" and source.get("batch_source"):
            history = _source_dataset(source["batch_source"], repo, brokers)
            inputs += [history] if history else []
        parts = {
            "inputs": inputs,
            "outputs": [_view_dataset(project, snapshot, run.view, run.version)],
        }
        run_id = _run_id(project, "materialization", run.id)
        job = f"{'push' if run.engine == 'push' else 'materialize'}.{run.view}"
        facets = {
            "featurestore_materialization": _facet(
                _RUN_FACET,
                id=run.id,
                window_start=_time(run.window_start),
                window_end=_time(run.window_end),
                rows_read=run.rows_read,
                rows_offline=run.rows_offline,
                rows_online=run.rows_online,
                offline_manifest=run.offline_manifest,
                code_version=run.code_version,
                engine=run.engine,
            )
        }
        yield _event("START", run.started_at, run_id, job, project, **parts)
        if run.status in ("succeeded", "failed"):
            end = "COMPLETE" if run.status == "succeeded" else "FAIL"
            if run.error:
                facets["errorMessage"] = _facet(
                    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
                    message=run.error,
                    programmingLanguage="python",
                )
            yield _event(end, run.finished_at, run_id, job, project, run_facets=facets, **parts)
    for ts in reversed(registry.training_sets(project)):
        if since is not None and ts.created_at and ts.created_at < since:
            continue
        inputs = []
        for label, manifest in sorted(ts.offline_manifests.items()):
            view, _, version = label.partition("@v")
            dataset = _view_dataset(project, snapshot, view, int(version))
            dataset["inputFacets"] = {
                "featurestore_offline_manifest": _facet(_RUN_FACET, sequence=manifest)
            }
            inputs.append(dataset)
        output = (
            {"namespace": "file", "name": ts.output_path}
            if ts.output_path
            else {"namespace": f"featurestore://{project}", "name": f"training_set/{ts.id}"}
        )
        parts = {"inputs": inputs, "outputs": [output]}
        run_id = _run_id(project, "training_set", ts.id)
        job = f"training_set.{ts.model or 'adhoc'}"
        facets = {"featurestore_training_set": _training_set_facet(ts)}
        yield _event("START", ts.created_at, run_id, job, project, **parts)
        yield _event("COMPLETE", ts.created_at, run_id, job, project, run_facets=facets, **parts)
