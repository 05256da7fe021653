"""Import a Feast feature repository: Feast's own objects in, featurestore definitions out.

The Feast repo is loaded with Feast's ``parse_repo`` (so whatever Feast accepts is read as
Feast reads it), then each object is converted or reported:

=====================  ==================================================================
Feast                  featurestore
=====================  ==================================================================
Entity (one join key)  Entity; its dtype from the source data (Feast infers it at apply)
FileSource             ParquetSource (relative paths made absolute: they were the Feast
                       repo's); ``field_mapping`` is not converted
KafkaSource (JSON)     KafkaSource with the message schema parsed from ``schema_json``,
                       ``watermark_delay_threshold`` as ``allowed_lateness``, the batch
                       source as ``batch_source``
PushSource             the view reads its batch source and is tagged ``feast_push_source``:
                       pushes reach it (``POST /v1/push``, or Feast's ``POST /push`` by
                       the push source's name)
FeatureView            FeatureView (name, entities, schema, ttl, online, tags, owner,
                       description); Map, Json and Struct fields are left out
OnDemandFeatureView    OnDemandFeatureView with the same function, mode and outputs
                       (``feast_on_demand.py``)
RequestSource          RequestSource
FeatureService         FeatureService over the converted views' features
StreamFeatureView,     not converted: reported
LabelView, BatchFeatureView, Permission
=====================  ==================================================================

Names Feast accepts and featurestore does not ("Credit history") are made identifiers,
unique among the names of their kind, and references follow; the report lists them.

Output: one definitions file, ``featurestore.yaml`` (the Feast project's name, local
defaults) and ``IMPORT_REPORT.md``. The result is loaded back before it is kept, so a
conversion that featurestore would refuse is reported, not written.
"""

from __future__ import annotations

import importlib
import keyword
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from featurestore.definitions._base import is_name
from featurestore.errors import MissingExtraError, RepoError
from featurestore.migrate import feast_on_demand
from featurestore.migrate.feast_on_demand import TYPES, lit, meta

DEFINITIONS_FILE = "feast_imported.py"
REPORT_FILE = "IMPORT_REPORT.md"
# Spark DDL types in a Kafka source's schema_json.
_DDL_TYPES = {
    "int": "Int32",
    "integer": "Int32",
    "bigint": "Int64",
    "long": "Int64",
    "float": "Float32",
    "double": "Float64",
    "string": "String",
    "boolean": "Bool",
    "binary": "Bytes",
    "timestamp": "UnixTimestamp",
}


class FeastImportError(RepoError):
    """The Feast repo cannot be read, or the output cannot be written."""


@dataclass
class ImportReport:
    feast_repo: Path
    out: Path
    project: str
    converted: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, name, why)
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        lines = [
            f"# Imported from Feast: {self.feast_repo}",
            "",
            f"Project `{self.project}`, on {datetime.now(UTC).date().isoformat()} by "
            "`featurestore import-feast`. Definitions: "
            f"[{DEFINITIONS_FILE}]({DEFINITIONS_FILE}).",
            "",
            f"## Converted ({len(self.converted)})",
            "",
        ]
        lines += [f"- {kind} `{name}`" for kind, name in self.converted] or ["- nothing"]
        lines += ["", f"## Not converted ({len(self.skipped)})", ""]
        lines += [f"- {kind} `{name}`: {why}" for kind, name, why in self.skipped] or ["- none"]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        lines += [
            "",
            "## Next",
            "",
            "```bash",
            f"featurestore plan -r {self.out}",
            f"featurestore apply -r {self.out}",
            f"featurestore materialize -r {self.out}   # offline and online, from the sources",
            "```",
            "",
            "Models and policies have no Feast equivalent: declare them (docs/concepts.md).",
        ]
        return "\n".join(lines) + "\n"


@contextmanager
def _in_repo(path: Path) -> Iterator[None]:
    """Feast imports a repo's files as modules relative to the working directory, by plain
    names ("definitions", "features"): modules of those names from an earlier import (of
    another repo, in a long-running process) are dropped before and after, or Feast would
    read the earlier repo's objects."""
    cwd, sys_path = os.getcwd(), list(sys.path)
    names = {".".join(f.relative_to(path).with_suffix("").parts) for f in path.rglob("*.py")}
    for name in names:
        sys.modules.pop(name, None)
    os.chdir(path)
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path[:] = sys_path
        for name in names:
            sys.modules.pop(name, None)


def load_feast_repo(path: Path) -> tuple[Any, str]:
    """Feast's RepoContents of the repo at ``path`` and its project name."""
    try:
        from feast.repo_config import load_repo_config
        from feast.repo_operations import parse_repo
    except ImportError as exc:
        raise MissingExtraError("feast", "feast") from exc
    if not (path / "feature_store.yaml").is_file():
        raise FeastImportError(
            f"{path} is not a Feast feature repository: it has no feature_store.yaml. Give the "
            "folder that holds it (for `feast init NAME`, that is NAME/feature_repo)."
        )
    importlib.invalidate_caches()
    with _in_repo(path):
        try:
            contents = parse_repo(path)
            config = load_repo_config(path, path / "feature_store.yaml")
        except Exception as exc:
            raise FeastImportError(
                f"Feast could not load {path}: {type(exc).__name__}: {exc}"
            ) from exc
    return contents, config.project


def _identifier(name: str, taken: set[str]) -> str:
    ident = re.sub(r"\W", "_", name)
    if not ident or ident[0].isdigit() or keyword.iskeyword(ident):
        ident = f"_{ident}"
    base, n = ident, 2
    while ident in taken:
        ident, n = f"{base}_{n}", n + 1
    taken.add(ident)
    return ident


def _arrow_dtype(arrow_type: Any) -> str | None:
    import pyarrow as pa

    if pa.types.is_int64(arrow_type):
        return "Int64"
    if pa.types.is_int32(arrow_type):
        return "Int32"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "String"
    return None


class _Writer:
    """Collects definitions as Python source, in dependency order."""

    def __init__(self, feast_repo: Path, report: ImportReport) -> None:
        self.repo = feast_repo
        self.report = report
        self.names: set[str] = set()
        self.blocks: list[str] = []
        self.dtypes: set[str] = set()
        self.uses_timedelta = False
        self.entities: dict[str, str] = {}  # feast name -> identifier
        self.sources: dict[int, str] = {}  # id(feast source) -> identifier
        self.views: dict[str, tuple[str, set[str]]] = {}  # name -> (identifier, features)
        self.renamed: dict[tuple[str, str], str] = {}  # (kind, Feast name) -> our name
        # Per kind, the names in use: Feast's valid ones (reserved up front) and renames.
        self.taken: dict[str, set[str]] = {}
        self.preamble: list[str] = []  # imports and constants on-demand functions use
        self.requests: dict[str, str | None] = {}  # request source name -> identifier
        self.push_sources: dict[str, str] = {}  # view -> the Feast push source it read
        self.on_demand_names: set[str] = set()

    def reserve(self, kind: str, names: Any) -> None:
        """Feast names that are valid here keep their name: renames must avoid them."""
        self.taken.setdefault(kind, set()).update(n for n in names if is_name(n))

    def name(self, kind: str, raw: str) -> str:
        """``raw`` as a featurestore name: Feast accepts any string ("Credit history"), we
        take identifiers, so other names become one (unique per kind) and the report says
        so; references to the object follow it."""
        if is_name(raw):
            return raw
        key = (kind, raw)
        if key not in self.renamed:
            base = re.sub(r"\W+", "_", raw).strip("_") or kind.lower()
            if base[0].isdigit():
                base = f"_{base}"
            taken = self.taken.setdefault(kind, set())
            name, n = base, 2
            while name in taken:
                name, n = f"{base}_{n}", n + 1
            taken.add(name)
            self.renamed[key] = name
            self.report.notes.append(
                f"{kind} `{raw}` is named `{name}` here: featurestore names are letters, "
                "digits and underscores."
            )
        return self.renamed[key]

    def _path(self, raw: str) -> str:
        if "://" in raw:
            return raw
        p = Path(raw)
        return str(p if p.is_absolute() else (self.repo / p).resolve())

    def entity(self, e: Any, views: list[Any]) -> None:
        if e.name.startswith("__"):
            return  # Feast's placeholder for entity-less views
        if len(getattr(e, "join_keys", None) or [e.join_key]) != 1:
            self.report.skipped.append(("Entity", e.name, "more than one join key"))
            return
        dtype = self._entity_dtype(e, views)
        ident = _identifier(e.name, self.names)
        self.dtypes.add(dtype)
        self.blocks.append(
            f"{ident} = Entity(\n    name={lit(self.name('Entity', e.name))},\n"
            f"    join_key={lit(e.join_key)},\n"
            f"    dtype={dtype},\n{self._meta(e)})"
        )
        self.entities[e.name] = ident
        self.report.converted.append(("Entity", e.name))

    def _entity_dtype(self, e: Any, views: list[Any]) -> str:
        value_type = str(getattr(e, "value_type", "")).rsplit(".", 1)[-1]
        if value_type in ("INT64", "INT32", "STRING"):
            return {"INT64": "Int64", "INT32": "Int32", "STRING": "String"}[value_type]
        import pyarrow.parquet as pq

        for v in views:  # as Feast does at apply: from the source's columns
            if e.name in v.entities and hasattr(v.batch_source, "path"):
                try:
                    schema = pq.read_schema(self._path(v.batch_source.path))
                except (OSError, ValueError):
                    continue
                if e.join_key in schema.names:
                    found = _arrow_dtype(schema.field(e.join_key).type)
                    if found:
                        return found
        self.report.notes.append(
            f"Entity `{e.name}`: its join key's type is not declared and no source file "
            "shows it; Int64 assumed. Change `dtype` if its keys are strings."
        )
        return "Int64"

    def _meta(self, obj: Any, push_source: str | None = None) -> str:
        return meta(obj, {"feast_push_source": push_source} if push_source else None)

    def source(self, s: Any, view: str) -> str | None:
        """The identifier of a converted source (converting it once), or None."""
        kind = type(s).__name__
        if id(s) in self.sources:
            return self.sources[id(s)]
        if kind == "PushSource":
            batch = self.source(s.batch_source, view) if s.batch_source else None
            if batch:
                self.push_sources[view] = s.name
                self.report.notes.append(
                    f"View `{view}` read push source `{s.name}`: it reads its batch source "
                    f"`{s.batch_source.name}`, and rows pushed to `{s.name}` reach it "
                    f"(`POST /push` with push_source_name, as in Feast, or `POST /v1/push` "
                    "naming the view; a push key: `featurestore credentials create --push`)."
                )
            return batch
        ident: str | None
        if kind == "FileSource":
            ident = _identifier(s.name or f"{view}_source", self.names)
            created = s.created_timestamp_column or None
            if s.field_mapping:
                self.report.notes.append(
                    f"Source `{s.name}`: field_mapping {dict(s.field_mapping)} is not "
                    "converted; rename the columns in the data or in a transformation."
                )
            self.blocks.append(
                f"{ident} = ParquetSource(\n    name={lit(self.name('Source', s.name))},\n"
                f"    path={lit(self._path(s.path))},\n"
                f"    timestamp_field={lit(s.timestamp_field)},\n"
                + (f"    created_timestamp_field={lit(created)},\n" if created else "")
                + f"{self._meta(s)})"
            )
        elif kind == "KafkaSource":
            ident = self._kafka(s, view)
            if ident is None:
                return None
        else:
            self.report.skipped.append(
                (kind, s.name, "no featurestore equivalent; views on it are not converted")
            )
            return None
        self.sources[id(s)] = ident
        self.report.converted.append((kind, s.name))
        return ident

    def _kafka(self, s: Any, view: str) -> str | None:
        fmt = s.kafka_options.message_format
        schema_json = getattr(fmt, "schema_json", None)
        if type(fmt).__name__ != "JsonFormat" or not schema_json:
            self.report.skipped.append(
                ("KafkaSource", s.name, f"message format {type(fmt).__name__}: only JSON is read")
            )
            return None
        fields = []
        for part in schema_json.split(","):
            name, _, ddl = part.strip().partition(" ")
            dtype = _DDL_TYPES.get(ddl.strip().lower())
            if dtype is None:
                self.report.skipped.append(
                    ("KafkaSource", s.name, f"field `{name}` has type {ddl!r}, not converted")
                )
                return None
            self.dtypes.add(dtype)
            fields.append(f"        Field(name={lit(name)}, dtype={dtype}),\n")
        batch = self.source(s.batch_source, view) if s.batch_source else None
        ident = _identifier(s.name, self.names)
        lateness = getattr(s, "watermark_delay_threshold", None) or getattr(
            s.kafka_options, "watermark_delay_threshold", None
        )
        extra = ""
        if lateness:
            self.uses_timedelta = True
            extra += f"    allowed_lateness=timedelta(seconds={int(lateness.total_seconds())}),\n"
        servers = s.kafka_options.kafka_bootstrap_servers
        if servers:
            extra += f"    bootstrap_servers={lit(servers)},\n"
        if batch:
            extra += f"    batch_source={batch},\n"
        self.blocks.append(
            f"{ident} = KafkaSource(\n    name={lit(self.name('Source', s.name))},\n"
            f"    topic={lit(s.kafka_options.topic)},\n"
            f"    timestamp_field={lit(s.timestamp_field)},\n"
            f"    schema=[\n{''.join(fields)}    ],\n"
            f"{extra}{self._meta(s)})"
        )
        return ident

    def view(self, v: Any) -> None:
        kind = type(v).__name__
        if kind != "FeatureView":
            self.report.skipped.append((kind, v.name, "not converted (batch-transformed view)"))
            return
        entities = [self.entities.get(e) for e in v.entities if not e.startswith("__")]
        if None in entities:
            self.report.skipped.append(("FeatureView", v.name, "an entity was not converted"))
            return
        source = v.stream_source if v.stream_source is not None else v.batch_source
        src = self.source(source, v.name)
        if src is None:
            self.report.skipped.append(("FeatureView", v.name, "its source was not converted"))
            return
        fields, kept = [], set()
        for f in v.features:
            dtype = TYPES.get(str(f.dtype))
            if dtype is None:
                self.report.notes.append(
                    f"View `{v.name}`: field `{f.name}` ({f.dtype}) left out: featurestore has "
                    "no map, JSON or struct type; flatten it into columns."
                )
                continue
            self.dtypes.add(dtype.split("(")[0])
            if "(" in dtype:
                self.dtypes.add(dtype.split("(")[1].rstrip(")"))
            desc = f", description={lit(f.description)}" if getattr(f, "description", "") else ""
            fields.append(f"        Field(name={lit(f.name)}, dtype={dtype}{desc}),\n")
            kept.add(f.name)
        if not fields:
            self.report.skipped.append(("FeatureView", v.name, "no field of a supported type"))
            return
        ttl = ""
        if v.ttl and v.ttl > timedelta(0):
            self.uses_timedelta = True
            ttl = f"    ttl=timedelta(seconds={int(v.ttl.total_seconds())}),\n"
        ident = _identifier(v.name, self.names)
        self.blocks.append(
            f"{ident} = FeatureView(\n    name={lit(self.name('FeatureView', v.name))},\n"
            f"    entities=[{', '.join(e for e in entities if e)}],\n    source={src},\n"
            f"    schema=[\n{''.join(fields)}    ],\n{ttl}"
            + ("" if v.online else "    online=False,\n")
            + f"{self._meta(v, push_source=self.push_sources.get(v.name))})"
        )
        self.views[v.name] = (ident, kept)
        self.report.converted.append(("FeatureView", v.name))

    def request(self, s: Any) -> str | None:
        """The identifier of a converted request source (converting it once), or None."""
        if s.name in self.requests:
            return self.requests[s.name]
        raw = s.name
        if feast_on_demand.is_input_schema_source(raw):
            raw = raw.removeprefix("__input_schema__") + "_input"
        ident = _identifier(raw, self.names)
        done = feast_on_demand.request_source(s, ident, self.name("Source", raw))
        if done.problem:
            self.report.skipped.append(("RequestSource", s.name, done.problem))
            self.requests[s.name] = None
            return None
        self.blocks.append(done.block)
        self.dtypes |= done.dtypes
        self.requests[s.name] = ident
        self.report.converted.append(("RequestSource", s.name))
        return ident

    def on_demand(self, v: Any) -> None:
        ident = _identifier(v.name, self.names)
        stored = {n: found for n, found in self.views.items() if n not in self.on_demand_names}
        done = feast_on_demand.on_demand_view(
            v, ident, self.name("FeatureView", v.name), stored, self.request
        )
        if done.problem:
            self.report.skipped.append(("OnDemandFeatureView", v.name, done.problem))
            return
        self.blocks.append(done.block)
        self.dtypes |= done.dtypes
        self.report.notes += done.notes
        self.preamble += [line for line in done.preamble if line not in self.preamble]
        self.views[v.name] = (ident, {f.name for f in v.features})
        self.on_demand_names.add(v.name)
        self.report.converted.append(("OnDemandFeatureView", v.name))

    def service(self, s: Any) -> None:
        parts, dropped = [], []
        for p in s.feature_view_projections:
            found = self.views.get(p.name)
            if found is None:
                dropped.append(p.name)
                continue
            ident, kept = found
            names = [f.name for f in p.features if f.name in kept]
            if p.name_alias:
                self.report.notes.append(
                    f"Service `{s.name}`: alias `{p.name_alias}` of `{p.name}` dropped."
                )
            if set(names) == kept:
                parts.append(ident)
            elif names:
                parts.append(f"{ident}[{lit(names)}]")
        if not parts:
            self.report.skipped.append(("FeatureService", s.name, "none of its views converted"))
            return
        if dropped:
            self.report.notes.append(
                f"Service `{s.name}`: without {', '.join(f'`{d}`' for d in dropped)} "
                "(not converted)."
            )
        ident = _identifier(s.name, self.names)
        self.blocks.append(
            f"{ident} = FeatureService(\n    name={lit(self.name('FeatureService', s.name))},\n"
            f"    features=[{', '.join(parts)}],\n{self._meta(s)})"
        )
        self.report.converted.append(("FeatureService", s.name))

    def source_code(self) -> str:
        classes = sorted(
            {"Entity", "FeatureService", "FeatureView", "Field", "KafkaSource", "ParquetSource"}
            & {b.split(" = ", 1)[-1].split("(", 1)[0] for b in self.blocks}
            | ({"Field"} if any("Field(" in b for b in self.blocks) else set())
        )
        names = sorted(set(classes) | {d.split("(")[0] for d in self.dtypes})
        header = (
            f'"""Imported from the Feast repository {self.repo} by `featurestore import-feast`.\n\n'
            f'What was and was not converted: {REPORT_FILE}."""\n\n'
        )
        imports = ("from datetime import timedelta\n\n" if self.uses_timedelta else "") + (
            "from featurestore import (\n" + "".join(f"    {n},\n" for n in names) + ")\n"
        )
        if self.preamble:  # what the on-demand functions use, as their modules had it
            imports += "\n" + "\n".join(self.preamble) + "\n"
        return header + imports + "\n" + "\n\n".join(self.blocks) + "\n"


def import_feast(feast_repo: Path, out: Path, *, project: str | None = None) -> ImportReport:
    """Convert the Feast repo at ``feast_repo`` into a featurestore repo at ``out`` (which
    must not exist, or be empty). Nothing is written unless the result loads."""
    from featurestore.definitions._base import check_name
    from featurestore.repo import load_repo

    feast_repo = feast_repo.resolve()
    contents, feast_project = load_feast_repo(feast_repo)
    name = project or re.sub(r"\W", "_", feast_project)
    check_name("project", name)
    if out.exists() and any(out.iterdir()):
        raise FeastImportError(f"{out} exists and is not empty; give a new folder for the import.")
    report = ImportReport(feast_repo, out, name)
    writer = _Writer(feast_repo, report)
    views = list(contents.feature_views)
    on_demand = list(contents.on_demand_feature_views)
    writer.reserve("Entity", [e.name for e in contents.entities])
    writer.reserve("Source", [d.name for d in contents.data_sources])
    writer.reserve("FeatureView", [v.name for v in [*views, *on_demand]])
    writer.reserve("FeatureService", [s.name for s in contents.feature_services])
    for e in contents.entities:
        writer.entity(e, views)
    for v in views:
        writer.view(v)
    for s in contents.data_sources:
        if type(s).__name__ == "RequestSource":
            writer.request(s)
    for o in on_demand:
        writer.on_demand(o)
    for kind, objects in (
        ("StreamFeatureView", contents.stream_feature_views),
        ("LabelView", getattr(contents, "label_views", [])),
    ):
        for o in objects:
            report.skipped.append(
                (kind, o.name, "not converted: its transformation is Python run by Feast")
                if kind != "LabelView"
                else (kind, o.name, "not converted: human labels have no equivalent")
            )
    for s in contents.feature_services:
        writer.service(s)
    staging = out.with_name(f".{out.name}.importing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        (staging / DEFINITIONS_FILE).write_text(writer.source_code())
        (staging / "featurestore.yaml").write_text(
            f"# Imported from Feast ({feast_repo}); local defaults, see infra/README.md.\n"
            f"project: {name}\n"
        )
        (staging / REPORT_FILE).write_text(report.to_markdown())
        load_repo(staging)  # a conversion featurestore refuses is an error here, not later
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report
