"""A consistent, in-memory read of one project's registry, and reference resolution.

Servers and jobs read a snapshot once and resolve references against it
without touching the database again; ``serial`` tells whether it is stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import orjson

from featurestore.definitions import (
    DriftMonitor,
    Entity,
    FeatureService,
    FeatureView,
    KafkaSource,
    Model,
    Policy,
)
from featurestore.definitions.on_demand import ON_DEMAND, OnDemandFeatureView
from featurestore.definitions.request_source import RequestSource
from featurestore.definitions.sources import DataSource, source_from_spec
from featurestore.dtypes import DType, parse_dtype
from featurestore.errors import (
    FeatureNotFound,
    FeatureViewNotFound,
    ObjectNotFound,
    OnDemandViewError,
    VersionNotFound,
    did_you_mean,
)
from featurestore.references import FeatureRef, is_feature_reference, parse_reference

ACTIVE = "active"
RETIRED = "retired"


class Head:
    """The current revision of one object.

    ``spec`` is parsed from its stored JSON on first use, not when the snapshot is read:
    a server of a 100,000-model registry reads the specs of the few models it serves.
    Immutable, like the snapshot that holds it.
    """

    __slots__ = ("_spec", "kind", "name", "revision", "status", "updated_at", "version")

    kind: str
    name: str
    revision: int
    status: str
    version: int | None  # feature views: the latest version
    updated_at: datetime
    _spec: dict[str, Any] | str | bytes

    def __init__(
        self,
        kind: str,
        name: str,
        revision: int,
        status: str,
        spec: dict[str, Any] | str | bytes,
        version: int | None,
        updated_at: datetime,
    ) -> None:
        """``spec``: the spec, or its JSON text (parsed when first read)."""
        init = object.__setattr__
        init(self, "kind", kind)
        init(self, "name", name)
        init(self, "revision", revision)
        init(self, "status", status)
        init(self, "version", version)
        init(self, "updated_at", updated_at)
        # One slot holds the text, then the parsed spec (one copy, not two): a reader in
        # another thread sees one or the other, never neither.
        init(self, "_spec", spec)

    @property
    def spec(self) -> dict[str, Any]:
        spec = self._spec
        if not isinstance(spec, dict):
            spec = orjson.loads(spec)
            object.__setattr__(self, "_spec", spec)
        return spec

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Head is immutable (cannot set {name!r})")

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and copy through __init__
        return (
            Head,
            (
                self.kind,
                self.name,
                self.revision,
                self.status,
                self._spec,
                self.version,
                self.updated_at,
            ),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Head):
            return NotImplemented
        return self._state() == other._state() and same_json(self._spec, other._spec)

    __hash__ = None  # type: ignore[assignment]  # it holds a dict, as before

    def _state(self) -> tuple[Any, ...]:
        return (self.kind, self.name, self.revision, self.status, self.version, self.updated_at)

    def __repr__(self) -> str:
        return (
            f"Head(kind={self.kind!r}, name={self.name!r}, revision={self.revision}, "
            f"status={self.status!r}, version={self.version}, updated_at={self.updated_at!r})"
        )


class ViewVersion:
    """One version of a feature view. ``version_spec`` and ``spec`` are parsed from their
    stored JSON on first use (see ``Head``)."""

    __slots__ = (
        "_spec",
        "_version_spec",
        "created_at",
        "fingerprint",
        "retired_at",
        "status",
        "version",
        "view",
    )

    view: str
    version: int
    fingerprint: str
    status: str
    created_at: datetime
    retired_at: datetime | None
    _version_spec: dict[str, Any] | str | bytes
    _spec: dict[str, Any] | str | bytes

    def __init__(
        self,
        view: str,
        version: int,
        fingerprint: str,
        version_spec: dict[str, Any] | str | bytes,
        spec: dict[str, Any] | str | bytes,
        status: str,
        created_at: datetime,
        retired_at: datetime | None,
    ) -> None:
        init = object.__setattr__
        init(self, "view", view)
        init(self, "version", version)
        init(self, "fingerprint", fingerprint)
        init(self, "status", status)
        init(self, "created_at", created_at)
        init(self, "retired_at", retired_at)
        init(self, "_version_spec", version_spec)
        init(self, "_spec", spec)

    @property
    def version_spec(self) -> dict[str, Any]:
        return self._parsed("_version_spec")

    @property
    def spec(self) -> dict[str, Any]:
        return self._parsed("_spec")

    def _parsed(self, slot: str) -> dict[str, Any]:
        value = getattr(self, slot)
        if not isinstance(value, dict):
            value = orjson.loads(value)
            object.__setattr__(self, slot, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"ViewVersion is immutable (cannot set {name!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            ViewVersion,
            (
                self.view,
                self.version,
                self.fingerprint,
                self._version_spec,
                self._spec,
                self.status,
                self.created_at,
                self.retired_at,
            ),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ViewVersion):
            return NotImplemented
        return (
            self._state() == other._state()
            and same_json(self._version_spec, other._version_spec)
            and same_json(self._spec, other._spec)
        )

    __hash__ = None  # type: ignore[assignment]

    def _state(self) -> tuple[Any, ...]:
        return (
            self.view,
            self.version,
            self.fingerprint,
            self.status,
            self.created_at,
            self.retired_at,
        )

    def __repr__(self) -> str:
        return (
            f"ViewVersion(view={self.view!r}, version={self.version}, "
            f"fingerprint={self.fingerprint!r}, status={self.status!r})"
        )

    @property
    def feature_dtypes(self) -> dict[str, DType]:
        return {f["name"]: parse_dtype(f["dtype"]) for f in self.version_spec["schema"]}

    @property
    def label(self) -> str:
        return f"{self.view}@v{self.version}"

    @property
    def on_demand(self) -> bool:
        """Whether this is a version of an on-demand view (computed, never stored)."""
        return self.version_spec.get("type") == ON_DEMAND


def same_json(a: Any, b: Any) -> bool:
    """Whether two specs, each parsed or still JSON text, are equal. Text written by the
    registry is canonical (sorted keys), so equal text is an equal spec without parsing."""
    if not isinstance(a, dict) and not isinstance(b, dict) and a == b:
        return True
    return bool(
        (a if isinstance(a, dict) else orjson.loads(a))
        == (b if isinstance(b, dict) else orjson.loads(b))
    )


@dataclass(frozen=True, slots=True)
class ResolvedFeature:
    """A reference bound to a concrete view version."""

    view: str
    version: int
    feature: str
    dtype: DType

    @property
    def ref(self) -> FeatureRef:
        return FeatureRef(self.view, self.feature, self.version)

    def __str__(self) -> str:
        return str(self.ref)


@dataclass(frozen=True)
class RegistrySnapshot:
    project: str
    serial: int
    heads: dict[tuple[str, str], Head] = field(default_factory=dict)
    versions: dict[str, dict[int, ViewVersion]] = field(default_factory=dict)

    # -- objects --------------------------------------------------------------

    @cached_property
    def _active(self) -> dict[str, dict[str, Head]]:
        # By kind, built once: at 100,000 models a scan of every head per question (is this
        # key's model registered? which policies are there?) cost a lookup milliseconds.
        out: dict[str, dict[str, Head]] = {}
        for (kind, name), head in self.heads.items():
            if head.status == ACTIVE:
                out.setdefault(kind, {})[name] = head
        return out

    def active(self, kind: str) -> dict[str, Head]:
        """The active objects of ``kind``, by name (a new dict: the caller's to change)."""
        return dict(self._active.get(kind, {}))

    def is_active(self, kind: str, name: str) -> bool:
        return name in self._active.get(kind, {})

    def changes_since(self, older: RegistrySnapshot) -> set[tuple[Any, ...]]:
        """What differs from ``older``, as the keys lookup plans record what they were
        compiled from (``Catalog``): ``("head", kind, name)`` for an object whose revision,
        status or latest version moved, ``("live", view)`` for a feature view that became
        (in)active, ``("vv", view, version)`` for a view version that changed in any way."""
        changed: set[tuple[Any, ...]] = set()
        before = older.heads
        for key, head in self.heads.items():
            old = before.get(key)
            if old is head or (old is not None and head._state() == old._state()):
                continue  # (a snapshot read after ``older`` shares its unchanged heads)
            changed.add(("head", *key))
            if key[0] == "feature_view" and (old is None or old.status != head.status):
                changed.add(("live", key[1]))
        for key in before:
            if key not in self.heads:  # gone (heads are retired, not deleted: a safeguard)
                changed.add(("head", *key))
                if key[0] == "feature_view":
                    changed.add(("live", key[1]))
        for view in self.versions.keys() | older.versions.keys():
            new_versions = self.versions.get(view, {})
            old_versions = older.versions.get(view, {})
            for version in new_versions.keys() | old_versions.keys():
                a, b = new_versions.get(version), old_versions.get(version)
                if a is not b and (a is None or b is None or a != b):
                    changed.add(("vv", view, version))
        return changed

    def head(self, kind: str, name: str) -> Head:
        head = self.heads.get((kind, name))
        if head is None or head.status != ACTIVE:
            label = kind.replace("_", " ")
            retired = " It was retired (removed from the repo)." if head else ""
            raise ObjectNotFound(
                f"Unknown {label} '{name}' in project '{self.project}'.{retired}"
                f"{did_you_mean(name, self.active(kind))} Run `featurestore apply` if it is new."
            )
        return head

    def find(self, name: str, kind: str | None = None) -> Head:
        """The one object named ``name`` (of ``kind``, when a name is used twice), active or
        retired: what ``featurestore describe NAME`` shows."""
        matches = [h for (k, n), h in self.heads.items() if n == name and kind in (None, k)]
        if not matches:
            names = {n for (_, n) in self.heads}
            raise ObjectNotFound(
                f"No object named '{name}' in project '{self.project}'."
                f"{did_you_mean(name, names)} `featurestore list` shows them all."
            )
        if len(matches) > 1:
            kinds = ", ".join(sorted(h.kind for h in matches))
            raise ObjectNotFound(f"'{name}' names several objects ({kinds}); pass --kind.")
        return matches[0]

    def streaming_views(self) -> list[str]:
        """Active views whose source is a KafkaSource, by name."""
        return sorted(
            name
            for name in self._active.get("feature_view", {})
            if not self.view_version(name).on_demand
            and isinstance(self.feature_view(name).source, KafkaSource)
        )

    def stored_views(self) -> list[str]:
        """Active views with data of their own (not on-demand), by name."""
        return sorted(
            name
            for name in self._active.get("feature_view", {})
            if not self.view_version(name).on_demand
        )

    def entity(self, name: str) -> Entity:
        return Entity.from_spec(self.head("entity", name).spec)

    def source(self, name: str) -> DataSource | RequestSource:
        spec = self.head("source", name).spec
        if spec.get("type") == "request":
            return RequestSource.from_spec(spec)
        return source_from_spec(spec)

    def feature_service(self, name: str) -> FeatureService:
        return FeatureService.from_spec(self.head("feature_service", name).spec)

    def model(self, name: str) -> Model:
        spec = {k: v for k, v in self.head("model", name).spec.items() if k != "pins"}
        return Model.from_spec(spec)

    def policy(self, name: str) -> Policy:
        return Policy.from_spec(self.head("policy", name).spec)

    def drift_monitor(self, name: str) -> DriftMonitor:
        return DriftMonitor.from_spec(self.head("drift_monitor", name).spec)

    def model_pins(self, name: str) -> dict[str, int]:
        """The view versions a model reads: fixed when it was registered or promoted."""
        return dict(self.head("model", name).spec.get("pins", {}))

    # -- feature views and versions -------------------------------------------

    def view_head(self, view: str) -> Head:
        head = self.heads.get(("feature_view", view))
        if head is None or head.status != ACTIVE:
            names = self.active("feature_view")
            retired = " It was retired (removed from the repo)." if head else ""
            raise FeatureViewNotFound(
                f"Unknown feature view '{view}' in project '{self.project}'.{retired}"
                f"{did_you_mean(view, names)} Run `featurestore apply` if it is new."
            )
        return head

    def latest_version(self, view: str) -> int:
        version = self.view_head(view).version
        assert version is not None
        return version

    def view_version(self, view: str, version: int | None = None) -> ViewVersion:
        """A view version; ``None`` means the latest. Retired versions are refused."""
        if version is None:
            version = self.latest_version(view)
        else:
            self.view_head(view)  # a retired view serves no version, pinned or not
        known = self.versions.get(view, {})
        found = known.get(version)
        if found is None:
            if not known:
                self.view_head(view)  # raises with did-you-mean
            listed = ", ".join(f"v{v}" for v in sorted(known)) or "none"
            raise VersionNotFound(
                f"Feature view '{view}' has no version v{version} (it has: {listed}). "
                f"Use one of those or '{view}:feature' for the latest."
            )
        if found.status != ACTIVE:
            active = [f"v{v}" for v, vv in sorted(known.items()) if vv.status == ACTIVE]
            raise VersionNotFound(
                f"{found.label} was retired and is no longer served. Active versions: "
                f"{', '.join(active) or 'none'}."
            )
        return found

    def feature_view(self, view: str, version: int | None = None) -> FeatureView:
        """The stored view as defined at ``version``, with entities and source resolved
        (OnDemandViewError for an on-demand view: see ``on_demand_view``)."""
        vv = self.view_version(view, version)
        if vv.on_demand:
            raise OnDemandViewError(
                f"{vv.label} is an on-demand view: its features are computed from "
                f"{', '.join(i['view'] for i in vv.version_spec['inputs']) or 'request data'} "
                "at lookup and training time, and it has no rows of its own to materialize, "
                "stream, push or clean up."
            )
        return self.build_view(vv)

    def any_view(self, view: str, version: int | None = None) -> FeatureView | OnDemandFeatureView:
        """The view at ``version``, stored or on-demand (for what both have: names, tags,
        owner, fields)."""
        vv = self.view_version(view, version)
        return self.on_demand_view(view, vv.version) if vv.on_demand else self.build_view(vv)

    def on_demand_view(self, view: str, version: int | None = None) -> OnDemandFeatureView:
        vv = self.view_version(view, version)
        key = (vv.view, vv.version)
        built = self._on_demand.get(key)
        if built is None:
            if not vv.on_demand:
                raise OnDemandViewError(f"{vv.label} is a stored view, not an on-demand view.")
            built = OnDemandFeatureView.from_spec(vv.spec, vv.version_spec)
            self._on_demand[key] = built
        return built

    @cached_property
    def _on_demand(self) -> dict[tuple[str, int], OnDemandFeatureView]:
        return {}

    def on_demand_inputs(self, view: str, version: int) -> list[ResolvedFeature]:
        """The stored features an on-demand view version reads, at the input versions it
        was applied with (bound by their fingerprints: a model pinned to it reads what it
        was trained on, whatever the inputs' latest versions are)."""
        vv = self.view_version(view, version)
        out: list[ResolvedFeature] = []
        for item in vv.version_spec["inputs"]:
            name, wanted = item["view"], item["fingerprint"]
            match = next(
                (v for v in self.versions.get(name, {}).values() if v.fingerprint == wanted),
                None,
            )
            if match is None:
                raise VersionNotFound(
                    f"{vv.label} reads {name} at a version that is no longer in the registry "
                    f"(fingerprint {wanted}). Apply the repo again to rebind it."
                )
            for feature in item["features"]:
                out.append(self.resolve(FeatureRef(name, feature, match.version)))
        return out

    @cached_property
    def _built(self) -> dict[tuple[str, int], FeatureView]:
        return {}

    def build_view(self, vv: ViewVersion) -> FeatureView:
        """The FeatureView of any version, retired ones included (for cleanup, lineage).
        Built once per snapshot: compiling a lookup plan builds each view it reads twice
        (layout, policies), and thousands of models read the same views."""
        if self.versions.get(vv.view, {}).get(vv.version) is not vv:
            return self._build_view(vv)  # not this snapshot's: nothing to remember it by
        key = (vv.view, vv.version)
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = self._build_view(vv)
        return built

    def _build_view(self, vv: ViewVersion) -> FeatureView:
        spec = vv.spec
        entities = {e["name"]: Entity.from_spec(e) for e in vv.version_spec["entities"]}
        source = dict(vv.version_spec["source"])
        # Where the source lives (brokers), its input bounds and its metadata are not part
        # of a version:
        # they come from the source's current definition.
        head = self.heads.get(("source", spec["source"]))
        if head is not None and head.spec.get("type") == source.get("type"):
            for key in (
                "bootstrap_servers",
                "max_future_skew_seconds",
                "max_event_bytes",
                "description",
                "owner",
                "tags",
            ):
                if key in head.spec:
                    source[key] = head.spec[key]
        sources = {spec["source"]: source_from_spec(source)}
        return FeatureView.from_spec(spec, entities, sources)

    def retired_versions(self) -> list[ViewVersion]:
        """Versions no longer served: retired, or of a view removed from the repo."""
        out = []
        for view, versions in sorted(self.versions.items()):
            head = self.heads.get(("feature_view", view))
            view_gone = head is None or head.status != ACTIVE
            out += [
                vv
                for _, vv in sorted(versions.items())
                if (view_gone or vv.status != ACTIVE) and not vv.on_demand
            ]
        return out

    def resolve(self, ref: str | FeatureRef) -> ResolvedFeature:
        """Bind ``view:feature`` to the latest version, ``view@vN:feature`` to vN."""
        parsed = parse_reference(ref) if isinstance(ref, str) else ref
        vv = self.view_version(parsed.view, parsed.version)
        dtypes = vv.feature_dtypes
        if parsed.feature not in dtypes:
            elsewhere = [
                f"v{v}"
                for v, other in sorted(self.versions.get(parsed.view, {}).items())
                if parsed.feature in other.feature_dtypes and other.status == ACTIVE
            ]
            hint = (
                f" It exists in {', '.join(elsewhere)}: pin it as "
                f"'{parsed.view}@{elsewhere[-1]}:{parsed.feature}'."
                if elsewhere
                else ""
            )
            raise FeatureNotFound(
                f"Feature view {vv.label} has no feature '{parsed.feature}'."
                f"{did_you_mean(parsed.feature, dtypes)}{hint}"
            )
        return ResolvedFeature(parsed.view, vv.version, parsed.feature, dtypes[parsed.feature])

    def resolve_all(self, items: list[str] | tuple[str, ...]) -> list[ResolvedFeature]:
        """Resolve feature references and feature-service names, keeping order, dropping repeats."""
        out: list[ResolvedFeature] = []
        seen: set[FeatureRef] = set()
        for item in items:
            refs = (
                [item]
                if is_feature_reference(item)
                else list(self.feature_service(item).references)
            )
            for ref in refs:
                resolved = self.resolve(ref)
                if resolved.ref not in seen:
                    seen.add(resolved.ref)
                    out.append(resolved)
        return out

    def resolve_model(self, model: str) -> list[ResolvedFeature]:
        """The features a model consumes, at the versions it is pinned to."""
        pins = self.model_pins(model)
        out: list[ResolvedFeature] = []
        seen: set[FeatureRef] = set()
        for service in self.model(model).service_names:
            for text in self.feature_service(service).references:
                ref = parse_reference(text)
                resolved = self.resolve(ref.pinned(ref.version or pins[ref.view]))
                if resolved.ref not in seen:
                    seen.add(resolved.ref)
                    out.append(resolved)
        return out

    def models_pinned_to(self, view: str, version: int) -> list[str]:
        return sorted(
            name
            for name, head in self._active.get("model", {}).items()
            if head.spec.get("pins", {}).get(view) == version
        )
