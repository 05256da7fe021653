"""A recorded training set as one folder another installation can check: data + lineage.

``DIR/data.parquet`` holds the set; ``DIR/manifest.json`` its lineage: views, versions,
offline commits, policies applied (masks and rules), features, model, build settings,
when and by whom it was built, and its content fingerprint (``fingerprint.py``).
``verify`` needs only the folder (no repo, registry or offline store): it recomputes the
fingerprint of the Parquet and compares.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from featurestore.errors import CorruptFileError, FingerprintMismatch, UsageError
from featurestore.offline.fingerprint import ALGORITHM, fingerprint_of_file
from featurestore.references import parse_reference

if TYPE_CHECKING:
    from featurestore.registry import TrainingSetRecord
    from featurestore.store import FeatureStore

FORMAT = "featurestore-training-set/1"
MANIFEST = "manifest.json"
DATA = "data.parquet"
FIX = "Export the training set again (`featurestore training-sets export ID --out DIR`)."


@dataclass(frozen=True, slots=True)
class Verified:
    training_set: int
    rows: int
    fingerprint: str


def export_training_set(store: FeatureStore, training_set: int, out: Path) -> dict[str, Any]:
    """Write the snapshot folder ``out`` (new or empty); the data is the set's own file
    when it still has the recorded fingerprint, a rebuild otherwise. Returns the manifest."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an empty folder; export into a new one.")
    record = store.registry.training_set(store.project, training_set)
    staging = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    staging.mkdir(parents=True)
    try:
        source = "rebuilt"
        if record.output_path and _matches(Path(record.output_path), record.fingerprint):
            shutil.copyfile(record.output_path, staging / DATA)
            source = record.output_path
        else:
            store.rebuild_training_set(training_set, staging / DATA)  # checks the fingerprint
        manifest = _manifest(record, staging / DATA, source)
        (staging / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def verify_snapshot(folder: Path) -> Verified:
    """Check ``folder``'s Parquet against its manifest's fingerprint (FingerprintMismatch,
    naming the training set, if it is not the same rows, order and values)."""
    folder = Path(folder)
    try:
        manifest = orjson.loads((folder / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{folder} has no {MANIFEST}: not a training-set export.") from None
    except orjson.JSONDecodeError as exc:
        raise FingerprintMismatch(f"{folder / MANIFEST} is not valid JSON ({exc}). {FIX}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UsageError(
            f"{folder / MANIFEST} is not a {FORMAT} manifest (format "
            f"{manifest.get('format') if isinstance(manifest, dict) else None!r})."
        )
    label = f"training set #{manifest.get('training_set')} of project {manifest.get('project')!r}"
    algorithm = manifest.get("fingerprint_algorithm")
    if algorithm != ALGORITHM:
        raise UsageError(
            f"The export of {label} was fingerprinted with {algorithm!r}; this featurestore "
            f"computes {ALGORITHM}. Verify it with a matching version."
        )
    data = folder / str(manifest.get("data", DATA))
    if not data.is_file():
        raise FingerprintMismatch(f"The export of {label} has no data file {data}. {FIX}")
    try:
        fingerprint = fingerprint_of_file(data, f"the export of {label}", FIX)
    except CorruptFileError as exc:
        raise FingerprintMismatch(f"The export of {label} is damaged: {exc}") from exc
    if fingerprint != manifest.get("fingerprint"):
        raise FingerprintMismatch(
            f"The export of {label} is not the recorded set: {data} has fingerprint "
            f"{fingerprint[:16]}..., the manifest {str(manifest.get('fingerprint'))[:16]}.... "
            f"Its rows, order or values changed. {FIX}"
        )
    if manifest.get("data_sha256") not in (None, file_sha256(data)):
        raise FingerprintMismatch(
            f"The export of {label} has the recorded rows, order and values, but {data} is "
            "not the file exported (its bytes differ from the manifest's data_sha256: "
            f"rewritten or damaged outside the pages). {FIX}"
        )
    rows = manifest.get("rows")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows != _row_count(data):
        raise FingerprintMismatch(
            f"The export of {label}: its manifest says {rows!r} rows, {data} holds "
            f"{_row_count(data):,}. {FIX}"
        )
    ident = manifest.get("training_set")
    return Verified(ident if isinstance(ident, int) else -1, rows, fingerprint)


def _row_count(path: Path) -> int:
    from featurestore.offline.parquet_io import parquet_file

    return int(parquet_file(path, "a training-set export", FIX).metadata.num_rows)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _matches(path: Path, fingerprint: str | None) -> bool:
    if fingerprint is None or not path.is_file():
        return False
    try:
        return fingerprint_of_file(path, "the training set's file", FIX) == fingerprint
    except CorruptFileError:
        return False


def _manifest(record: TrainingSetRecord, data: Path, source: str) -> dict[str, Any]:
    build = record.build or {}
    views: list[dict[str, Any]] = []
    for text in record.features:  # every view read, on-demand ones too (they have no commit)
        ref = parse_reference(text)
        view = {"view": ref.view, "version": ref.version}
        if view not in views:
            views.append(view)
    return {
        "format": FORMAT,
        "training_set": record.id,
        "project": record.project,
        "model": record.model,
        "features": list(record.features),
        "views": views,
        "offline_commits": record.offline_manifests,
        "policies": {"masks": build.get("masks", {}), "rules": build.get("rules", [])},
        "build": {
            "engine": record.engine,
            "timestamp_column": build.get("timestamp_column"),
            "full_feature_names": build.get("full_feature_names"),
            "entity_rows": record.entity_rows,
            "entities_fingerprint": build.get("entities"),
        },
        "rows": record.rows,
        "fingerprint": record.fingerprint,
        "fingerprint_algorithm": ALGORITHM,
        "data": DATA,
        "data_bytes": data.stat().st_size,
        "data_sha256": file_sha256(data),  # the exact bytes; the fingerprint: the content
        "data_source": source,
        "created_at": record.created_at.isoformat() if record.created_at else None,
        "created_by": record.created_by,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
