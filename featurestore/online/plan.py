"""Lookup plans: what a request reads, compiled once per model or feature list.

A plan groups the requested features by view version and the view versions
by entity set (one Redis hash per entity key holds every view of those
entities), so a lookup sends one HMGET per entity row and entity set, all in
one pipeline: one round trip. Compiling resolves references against a
registry snapshot; requests then pay list indexing, not resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from featurestore.errors import EntityInputError, FeatureNotServedOnline
from featurestore.online.layout import ViewLayout, key_part, value_decoders
from featurestore.online.on_demand import NO_ON_DEMAND, OnDemandPlan, plan_on_demand
from featurestore.registry.snapshot import RegistrySnapshot, ResolvedFeature


@dataclass(frozen=True, slots=True)
class ViewRead:
    """One view version inside a lookup: which decoded values go to which outputs."""

    layout: ViewLayout
    positions: tuple[int, ...]  # index in the stored row, per requested feature
    outputs: tuple[int, ...]  # index in the response, per requested feature
    decoders: tuple[tuple[int, Callable[[Any], Any]], ...]  # by stored position
    ttl_us: int | None


@dataclass(frozen=True, slots=True)
class KeyRead:
    """One entity set: the hash key to build per entity row and the fields to read."""

    prefix: bytes
    join_keys: tuple[str, ...]
    key_dtypes: tuple[str, ...]
    parts: tuple[Callable[[Any], str], ...]
    fields: tuple[bytes, ...]
    views: tuple[ViewRead, ...]  # in fields order


@dataclass(frozen=True, slots=True)
class LookupPlan:
    project: str
    model: str | None
    feature_names: tuple[str, ...]  # output names, in request order
    refs: tuple[str, ...]  # 'view@vN:feature', in request order
    dtypes: tuple[str, ...]
    join_keys: tuple[str, ...]  # every key an entity row needs
    key_reads: tuple[KeyRead, ...]
    masks: tuple[tuple[int, str], ...] = ()  # (output index, hash | redact) by policy
    mask_key: bytes = b""
    policy_model: str | None = None  # whose policies decided (the model, or the key's model)
    decisions: tuple[str, ...] = ()  # allow | mask per output, when policy_model is set
    sample_rate: float = 0.0  # of the serving log, when a drift monitor watches the model
    served_key: bytes = b""  # the serving log's stream
    drift_key: bytes = b""  # the model's drift summary, returned with each response
    # On-demand features: computed after the round trip from the values read (requested
    # ones, and hidden inputs in working columns width..) and the request fields.
    on_demand: OnDemandPlan = NO_ON_DEMAND

    @property
    def width(self) -> int:
        return len(self.feature_names)

    @property
    def columns(self) -> int:
        """Working columns of a lookup: the outputs, then hidden on-demand inputs."""
        return len(self.feature_names) + len(self.on_demand.hidden)

    def key_dtype(self, join_key: str) -> str:
        for k in self.key_reads:
            if join_key in k.join_keys:
                return k.key_dtypes[k.join_keys.index(join_key)]
        raise KeyError(join_key)

    def views_needing(self, join_key: str) -> list[str]:
        return sorted(
            v.layout.label for k in self.key_reads if join_key in k.join_keys for v in k.views
        )


def compile_plan(
    snapshot: RegistrySnapshot,
    features: Sequence[ResolvedFeature],
    *,
    model: str | None = None,
    full_feature_names: bool = False,
) -> LookupPlan:
    names = _output_names(features, full_feature_names)
    on_demand = plan_on_demand(snapshot, features)
    working = [*features, *on_demand.hidden]
    by_version: dict[tuple[str, int], list[int]] = {}
    for i, f in enumerate(working):
        if i not in on_demand.computed:
            by_version.setdefault((f.view, f.version), []).append(i)
    by_entities: dict[bytes, list[ViewRead]] = {}
    keys_of: dict[bytes, tuple[str, ...]] = {}
    dtypes_of: dict[bytes, tuple[str, ...]] = {}
    for (view, version), outputs in by_version.items():
        definition = snapshot.feature_view(view, version)
        if not definition.online:
            raise FeatureNotServedOnline(
                f"Feature view {view}@v{version} is declared online=False: its features are "
                "for training only. Set online=True and materialize it to look it up."
            )
        layout = ViewLayout.from_view(snapshot.project, definition, version)
        stored = {name: i for i, name in enumerate(layout.features)}
        positions = tuple(stored[working[i].feature] for i in outputs)
        wanted = set(positions)
        decoders = tuple((pos, fn) for pos, fn in value_decoders(layout.dtypes) if pos in wanted)
        read = ViewRead(layout, positions, tuple(outputs), decoders, layout.ttl_us)
        by_entities.setdefault(layout.prefix, []).append(read)
        keys_of[layout.prefix] = layout.join_keys
        dtypes_of[layout.prefix] = layout.key_dtypes
    key_reads = []
    for prefix, reads in by_entities.items():
        key_reads.append(
            KeyRead(
                prefix=prefix,
                join_keys=keys_of[prefix],
                key_dtypes=dtypes_of[prefix],
                parts=tuple(key_part(d) for d in dtypes_of[prefix]),
                fields=tuple(r.layout.field for r in reads),
                views=tuple(reads),
            )
        )
    join_keys: list[str] = []
    for k in key_reads:
        join_keys += [j for j in k.join_keys if j not in join_keys]
    return LookupPlan(
        project=snapshot.project,
        model=model,
        feature_names=tuple(names),
        refs=tuple(str(f) for f in features),
        dtypes=tuple(str(f.dtype) for f in features),
        join_keys=tuple(join_keys),
        key_reads=tuple(key_reads),
        on_demand=on_demand,
    )


def _output_names(features: Sequence[ResolvedFeature], full: bool) -> list[str]:
    names = [f"{f.view}__{f.feature}" if full else f.feature for f in features]
    seen: dict[str, ResolvedFeature] = {}
    for name, f in zip(names, features, strict=True):
        if name in seen:
            other = seen[name]
            hint = (
                "Ask for full feature names (view__feature)."
                if not full
                else "Ask for one version of the view per lookup."
            )
            raise EntityInputError(
                f"Features {other} and {f} would both be returned as '{name}'. {hint}"
            )
        seen[name] = f
    return names
