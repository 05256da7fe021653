"""``plan``: what an apply would change, object by object and field by field.

Change kinds follow what they do to data. ``NEW_VERSION`` is the only kind
that makes a feature view's new immutable version (schema, transformation,
source, entities or aggregations changed); ``METADATA`` records a new
revision of the same version (owner, description, tags, TTL,
expectations). A model keeps its pinned versions until its own definition
changes or it is promoted, so a new view version never moves a serving model
by surprise.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypedDict

import orjson

from featurestore.definitions import KINDS, FeatureView, OnDemandFeatureView
from featurestore.definitions.feature_view import fingerprint
from featurestore.errors import FeatureStoreError, Problem, RepoLoadError
from featurestore.gcpause import gc_paused
from featurestore.registry.plan_render import LABELS, plan_counts, render_plan
from featurestore.registry.snapshot import ACTIVE, RegistrySnapshot
from featurestore.repo import RepoContents


class ChangeKind(StrEnum):
    NEW = "new"
    NEW_VERSION = "new_version"
    METADATA = "metadata"
    REPIN = "repin"
    RETIRE = "retire"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    old: Any
    new: Any

    def __str__(self) -> str:
        if self.old is _MISSING:
            return f"+ {self.path} = {_show(self.new)}"
        if self.new is _MISSING:
            return f"- {self.path} = {_show(self.old)}"
        return f"{self.path}: {_show(self.old)} -> {_show(self.new)}"


@dataclass(frozen=True)
class Change:
    kind: str  # registry kind, e.g. "feature_view"
    name: str
    change: ChangeKind
    spec: dict[str, Any] | None  # the spec to write (None for RETIRE/UNCHANGED)
    version: int | None = None  # feature views: the version after the apply
    old_version: int | None = None
    fingerprint: str | None = None
    version_spec: dict[str, Any] | None = None
    fields: tuple[FieldChange, ...] = ()
    notes: tuple[str, ...] = ()
    location: str | None = None

    def summary(self) -> str:
        label = f"{LABELS[self.kind]} {self.name}"
        detail = {
            ChangeKind.NEW: "new" + (f" (v{self.version})" if self.version else ""),
            ChangeKind.NEW_VERSION: (
                f"new version v{self.version} (v{self.old_version} stays served)"
            ),
            ChangeKind.METADATA: "metadata changed"
            + (f" (stays v{self.version})" if self.version else ""),
            ChangeKind.REPIN: "re-pinned",
            ChangeKind.RETIRE: "retired (removed from the repo; data kept)",
            ChangeKind.UNCHANGED: "unchanged",
        }[self.change]
        schema = [f for f in self.fields if f.path.startswith("schema.")]
        inline = " — " + ", ".join(_schema_text(f) for f in schema) if schema else ""
        return f"{label}: {detail}{inline}"

    def label(self) -> str:
        """'feature_view user_profile: new_version v3', one line per change (the audit's)."""
        version = f" v{self.version}" if self.version else ""
        return f"{self.kind} {self.name}: {self.change}{version}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "change": str(self.change),
            "version": self.version,
            "old_version": self.old_version,
            "fields": [
                {"path": f.path, "old": _jsonable(f.old), "new": _jsonable(f.new)}
                for f in self.fields
            ],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Plan:
    project: str
    changes: tuple[Change, ...] = field(default_factory=tuple)

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.change != ChangeKind.UNCHANGED]

    @property
    def has_changes(self) -> bool:
        return bool(self.pending)

    def render(
        self,
        *,
        verbose: bool = False,
        limit: int | None = None,
        only: Collection[str] | None = None,
    ) -> str:
        """Counts per kind and change, then the changes: at most ``limit`` (None or 0: all),
        of ``only`` these kinds; see plan_render."""
        return render_plan(self, verbose=verbose, limit=limit, only=only)

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "has_changes": self.has_changes,
            "changes": [c.to_json() for c in self.changes],
        }

    def summary_json(self) -> dict[str, Any]:
        """What an apply records: the counts and the changes, not the unchanged objects."""
        return {
            "project": self.project,
            "counts": plan_counts(self),
            "changes": [c.to_json() for c in self.pending],
        }


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value else repr(value)
    return orjson.dumps(value).decode()


def _jsonable(value: Any) -> Any:
    return None if value is _MISSING else value


def _schema_text(fc: FieldChange) -> str:
    """'amount_sum float32 -> float64', '+ amount_max float64', '- amount_min'."""
    name = fc.path.split(".", 2)[1]
    if fc.old is _MISSING:
        return f"+ {name} {fc.new.get('dtype', '') if isinstance(fc.new, dict) else fc.new}"
    if fc.new is _MISSING:
        return f"- {name}"
    return f"{name} {_show(fc.old)} -> {_show(fc.new)}"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a spec; lists of named dicts are keyed by name so reordering reads well."""
    out: dict[str, Any] = {}
    if isinstance(value, dict) and value:
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif (
        isinstance(value, list)
        and value
        and all(isinstance(i, dict) and "name" in i for i in value)
    ):
        for item in value:
            rest = {k: v for k, v in item.items() if k != "name"}
            out[f"{prefix}.{item['name']}"] = rest if rest else item["name"]
    else:
        out[prefix] = value
    return out


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def diff_specs(old: dict[str, Any], new: dict[str, Any]) -> tuple[FieldChange, ...]:
    flat_old, flat_new = _flatten(old), _flatten(new)
    changes: list[FieldChange] = []
    for path in sorted(set(flat_old) | set(flat_new)):
        a, b = flat_old.get(path, _MISSING), flat_new.get(path, _MISSING)
        if a == b:
            continue
        if _str_list(a) and _str_list(b):
            changes.extend(FieldChange(path, _MISSING, item) for item in b if item not in a)
            changes.extend(FieldChange(path, item, _MISSING) for item in a if item not in b)
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            # A named item changed: report its changed attributes.
            for key in sorted(set(a) | set(b)):
                if a.get(key, _MISSING) != b.get(key, _MISSING):
                    if path.startswith("schema.") and key == "dtype":
                        changes.append(FieldChange(path, a.get(key), b.get(key)))
                    else:
                        changes.append(
                            FieldChange(f"{path}.{key}", a.get(key, _MISSING), b.get(key, _MISSING))
                        )
            continue
        changes.append(FieldChange(path, a, b))
    return tuple(changes)


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    """A view spec without its transformation's source text: comments and formatting in user
    code neither make a version nor a revision (the fingerprint covers the logic)."""
    transformation = spec.get("transformation")
    if not transformation:
        return spec
    return {**spec, "transformation": transformation["fingerprint"]}


def _metadata_only(spec: dict[str, Any]) -> dict[str, Any]:
    """A view spec without what the version covers, so metadata diffs list only metadata."""
    out = {k: v for k, v in spec.items() if k not in ("entities", "source", "schema")}
    out.pop("transformation", None)
    out.pop("aggregations", None)
    out["feature_descriptions"] = {
        f["name"]: {"description": f["description"], "tags": f["tags"]} for f in spec["schema"]
    }
    return out


def _shared_metadata_diff(old: dict[str, Any], new: dict[str, Any]) -> tuple[FieldChange, ...]:
    """Metadata changes beside a new version, leaving out features added or removed (the
    schema diff already lists those)."""
    shared = {f["name"] for f in old["schema"]} & {f["name"] for f in new["schema"]}
    return tuple(
        fc
        for fc in diff_specs(_metadata_only(old), _metadata_only(new))
        if not fc.path.startswith("feature_descriptions.") or fc.path.split(".")[1] in shared
    )


def compute_plan(contents: RepoContents, snapshot: RegistrySnapshot) -> Plan:
    """Diff the repo against the registry. Raises RepoLoadError for pins that cannot resolve."""
    with gc_paused():
        return _compute_plan(contents, snapshot)


def _compute_plan(contents: RepoContents, snapshot: RegistrySnapshot) -> Plan:
    changes: list[Change] = []
    problems: list[Problem] = []
    new_versions: dict[str, int] = {}
    root = contents.config.repo_path
    for kind in KINDS:
        desired = contents.of_kind(kind)
        for name in sorted(desired):
            obj = desired[name]
            if kind == "feature_view":
                change = _plan_view(obj, snapshot, root)
                new_versions[name] = change.version  # type: ignore[assignment]
            elif kind == "model":
                change = _plan_model(obj, contents, snapshot, new_versions, root)
            else:
                change = _plan_plain(kind, obj, snapshot, root)
            changes.append(change)
        for name, head in sorted(snapshot.active(kind).items()):
            if name not in desired:
                changes.append(Change(kind, name, ChangeKind.RETIRE, None, version=head.version))
    _check_pinned_references(contents, snapshot, new_versions, problems)
    _check_policies(contents, problems)
    if problems:
        raise RepoLoadError(problems)
    return Plan(snapshot.project, tuple(changes))


def _location(obj: Any, root: Any = None) -> str | None:
    """'models.py:30': relative to the repo, so the registry reads the same on every machine."""
    loc = getattr(obj, "location", None)
    if loc is None:
        return None
    prefix = f"{root}{os.sep}" if root else None
    if prefix is None or not loc.file.startswith(prefix):
        return str(loc)
    relative = loc.file[len(prefix) :]
    return f"{relative.replace(os.sep, '/')}:{loc.line}"


def _where(obj: Any, root: Path) -> tuple[str | None, int | None]:
    """The (file, line) of a Problem about ``obj``, from its location in the repo."""
    path, _, line_text = (_location(obj, root) or "").rpartition(":")
    return path or None, int(line_text) if line_text.isdigit() else None


def _plan_plain(kind: str, obj: Any, snapshot: RegistrySnapshot, root: Path) -> Change:
    spec = obj.to_spec()
    head = snapshot.heads.get((kind, obj.name))
    if head is None or head.status != ACTIVE:
        return Change(kind, obj.name, ChangeKind.NEW, spec, location=_location(obj, root))
    if head.spec == spec:
        return Change(kind, obj.name, ChangeKind.UNCHANGED, None)
    return Change(
        kind,
        obj.name,
        ChangeKind.METADATA,
        spec,
        fields=diff_specs(head.spec, spec),
        location=_location(obj, root),
    )


class _ViewIdentity(TypedDict):
    """The Change arguments every feature-view change carries (typed for ``**`` unpacking)."""

    fingerprint: str
    version_spec: dict[str, Any]
    location: str | None


def _plan_view(
    view: FeatureView | OnDemandFeatureView, snapshot: RegistrySnapshot, root: Path
) -> Change:
    spec = view.to_spec()
    version_spec = view.version_spec()
    fp = fingerprint(version_spec)
    head = snapshot.heads.get(("feature_view", view.name))
    known = snapshot.versions.get(view.name, {})
    next_version = max(known, default=0) + 1

    def identity() -> _ViewIdentity:
        # Built only for a change: an unchanged view (nearly all of them) needs no location.
        return _ViewIdentity(
            fingerprint=fp, version_spec=version_spec, location=_location(view, root)
        )

    if head is None or head.status != ACTIVE:
        # A re-added view whose definition matches its last version keeps serving it.
        last = known.get(max(known)) if known else None
        if last is not None and last.fingerprint == fp and last.status == ACTIVE:
            return Change(
                "feature_view",
                view.name,
                ChangeKind.NEW,
                spec,
                version=last.version,
                notes=(f"reactivates v{last.version} (same definition)",),
                **identity(),
            )
        return Change(
            "feature_view", view.name, ChangeKind.NEW, spec, version=next_version, **identity()
        )
    current = known[head.version]  # type: ignore[index]
    if current.fingerprint != fp:
        return Change(
            "feature_view",
            view.name,
            ChangeKind.NEW_VERSION,
            spec,
            version=next_version,
            old_version=current.version,
            fields=diff_specs(current.version_spec, version_spec)
            + _shared_metadata_diff(head.spec, spec),
            **identity(),
        )
    if _comparable(head.spec) != _comparable(spec):
        return Change(
            "feature_view",
            view.name,
            ChangeKind.METADATA,
            spec,
            version=current.version,
            fields=diff_specs(_metadata_only(head.spec), _metadata_only(spec)),
            **identity(),
        )
    return Change("feature_view", view.name, ChangeKind.UNCHANGED, None, version=current.version)


def _plan_model(
    model: Any,
    contents: RepoContents,
    snapshot: RegistrySnapshot,
    new_versions: dict[str, int],
    root: Path,
) -> Change:
    spec = model.to_spec()
    views = sorted(
        {
            ref.view
            for service in model.service_names
            for ref in contents.feature_services[service].refs
        }
    )
    latest = {view: new_versions[view] for view in views}
    head = snapshot.heads.get(("model", model.name))
    if head is None or head.status != ACTIVE:
        return Change(
            "model",
            model.name,
            ChangeKind.NEW,
            {**spec, "pins": latest},
            notes=(_pins_text(latest),),
            location=_location(model, root),
        )
    old_pins = head.spec.get("pins", {})
    old_spec = {k: v for k, v in head.spec.items() if k != "pins"}
    if old_spec != spec:
        # A changed model is a re-registration: it moves to the latest versions.
        fields = diff_specs(old_spec, spec) + diff_specs({"pins": old_pins}, {"pins": latest})
        return Change(
            "model",
            model.name,
            ChangeKind.METADATA,
            {**spec, "pins": latest},
            fields=fields,
            location=_location(model, root),
        )
    pins = {view: old_pins.get(view, latest[view]) for view in views}
    notes: list[str] = []
    for view, features in _unpinned_features(model, contents).items():
        if pins[view] == latest[view]:
            continue
        pinned = snapshot.versions.get(view, {}).get(pins[view])
        lacking = sorted(features - set(pinned.feature_dtypes)) if pinned else sorted(features)
        if lacking:
            # The pinned version cannot serve what the services now list.
            notes.append(
                f"moves to {view}@v{latest[view]}: its services now read "
                f"{', '.join(lacking)}, which {view}@v{pins[view]} does not have"
            )
            pins[view] = latest[view]
    if pins != old_pins:
        dropped = sorted(set(old_pins) - set(pins))
        added = sorted(set(pins) - set(old_pins))
        notes += [f"no longer reads {v}" for v in dropped]
        notes += [f"now also reads {v}@v{pins[v]}" for v in added]
        return Change(
            "model",
            model.name,
            ChangeKind.REPIN,
            {**spec, "pins": pins},
            fields=diff_specs({"pins": old_pins}, {"pins": pins}),
            notes=tuple(notes),
        )
    behind = [f"{v}@v{pins[v]} (v{latest[v]} available)" for v in views if pins[v] != latest[v]]
    behind_notes = (
        (
            f"stays pinned to {', '.join(behind)}; run `featurestore promote {model.name}` "
            "to move it once the new versions are materialized",
        )
        if behind
        else ()
    )
    return Change("model", model.name, ChangeKind.UNCHANGED, None, notes=behind_notes)


def _unpinned_features(model: Any, contents: RepoContents) -> dict[str, set[str]]:
    """Per view, the features the model's services read without pinning a version."""
    out: dict[str, set[str]] = {}
    for service in model.service_names:
        for ref in contents.feature_services[service].refs:
            if ref.version is None:
                out.setdefault(ref.view, set()).add(ref.feature)
    return out


def _pins_text(pins: dict[str, int]) -> str:
    return "pinned to " + ", ".join(f"{v}@v{n}" for v, n in pins.items())


def _check_pinned_references(
    contents: RepoContents,
    snapshot: RegistrySnapshot,
    new_versions: dict[str, int],
    problems: list[Problem],
) -> None:
    """``view@vN:feature`` in a service must name a version that exists (or this apply makes)."""
    for name, service in contents.feature_services.items():
        for text, ref in zip(service.references, service.refs, strict=True):
            if ref.version is None:
                continue
            file, line = _where(service, contents.config.repo_path)
            if ref.version == new_versions.get(ref.view):
                view = contents.feature_views[ref.view]
                if view.field(ref.feature) is None:
                    problems.append(
                        Problem(f"FeatureService '{name}': {text} has no such feature.", file, line)
                    )
                continue
            known = set(snapshot.versions.get(ref.view, {}))
            if not known:  # the view's first apply: only the version this apply makes exists
                listed = [new_versions[ref.view]]
                problems.append(
                    Problem(
                        f"FeatureService '{name}' refers to '{text}', but view '{ref.view}' has "
                        f"no version v{ref.version} (after this apply it has: "
                        f"{', '.join(f'v{v}' for v in listed)}).",
                        file,
                        line,
                    )
                )
                continue
            try:
                snapshot.resolve(ref)
            except FeatureStoreError as exc:
                problems.append(
                    Problem(f"FeatureService '{name}' refers to '{text}': {exc}", file, line)
                )


def _check_policies(contents: RepoContents, problems: list[Problem]) -> None:
    """A model whose services read a feature some policy denies it fails the plan."""
    from featurestore.policy.engine import DENY, Decision, FeatureAttributes, decide, derived

    policies = list(contents.policies.values())
    default = contents.config.policy_default
    if not policies and default != DENY:
        return  # nothing can deny: skip deciding 100,000 models' features one by one
    attributes: dict[tuple[str, str], FeatureAttributes] = {}

    def decide_one(view: Any, feature_name: str, model: Any) -> Decision:
        key = (view.name, feature_name)
        found = attributes.get(key)
        if found is None:
            found = attributes[key] = FeatureAttributes.of(view, feature_name)
        return decide(policies, default, found, model)

    for name, model in sorted(contents.models.items()):
        for service in model.service_names:
            for ref in contents.feature_services[service].refs:
                view = contents.feature_views.get(ref.view)
                if view is None:
                    continue  # reported by the loader
                decision = decide_one(view, ref.feature, model)
                if isinstance(view, OnDemandFeatureView):
                    decision = derived(
                        decision, _input_decisions(view, contents, decide_one, model)
                    )
                if decision.effect == DENY:
                    file, line = _where(model, contents.config.repo_path)
                    problems.append(
                        Problem(
                            f"Model '{name}' would read {ref.view}:{ref.feature} (through "
                            f"service '{service}'), which {decision.because()} denies it. "
                            "Take the feature out of the service, or change the policy.",
                            file,
                            line,
                        )
                    )


def _input_decisions(
    view: OnDemandFeatureView, contents: RepoContents, decide_one: Any, model: Any
) -> Iterator[tuple[str, Any]]:
    """(label, decision) of each input of an on-demand view, for ``derived``."""
    for vi in view.inputs:
        source = contents.feature_views.get(vi.view)
        if source is None:
            continue  # reported by the loader
        for feature in vi.features:
            yield f"{vi.view}:{feature}", decide_one(source, feature, model)
