"""Which model may use which feature: rules evaluated once, decisions looked up after.

A policy matches a (feature, model) pair when its feature and model conditions both hold
(see ``definitions/policy.py``). A feature's attributes are its view's name, owner and
tags, with the field's own tags on top (a field tagged ``pii`` is ``pii`` whatever its
view says). Among the matching policies **deny wins**, then mask, then allow; a pair no
policy matches gets the project's ``policy.default`` (allow unless configured). Ties
between policies of one effect go to the first by name, so a decision never depends on
file order.

An on-demand feature is derived from its inputs: unless a policy allows it explicitly
(an allow rule that matches it, and no stronger rule), it gets the strictest of its own
decision and its inputs' decisions, so a model denied (or masked) an input is denied (or
masked) what is computed from it.

Decisions are compiled per model and registry snapshot (``ModelDecisions``): lookups
and training-set builds pay a dictionary lookup, never a rule evaluation.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from featurestore.definitions import FeatureView, Model, OnDemandFeatureView, Policy
from featurestore.errors import PolicyDeniedError

ALLOW, DENY, MASK = "allow", "deny", "mask"
_RANK = {DENY: 0, MASK: 1, ALLOW: 2}


@dataclass(frozen=True, slots=True)
class Decision:
    effect: str  # allow | deny | mask
    rule: str | None  # the deciding policy; None: the project default
    mask: str | None = None  # hash | redact, for mask
    reason: str = ""  # the policy's description
    via: str = ""  # for a derived (on-demand) feature: the input that decided

    def because(self) -> str:
        on = f" on its input {self.via}" if self.via else ""
        if self.rule is None:
            return f"the project's default policy{on}"
        return f"policy '{self.rule}'" + (f" ({self.reason})" if self.reason else "") + on


AnyView = FeatureView | OnDemandFeatureView


def derived(own: Decision, inputs: Iterable[tuple[str, Decision]]) -> Decision:
    """An on-demand feature's decision from its own and its inputs' ``(label, decision)``:
    its own when a policy allows it explicitly, else the strictest."""
    if own.effect == DENY or (own.effect == ALLOW and own.rule is not None):
        return own
    worst = own
    for label, d in inputs:
        if _RANK[d.effect] < _RANK[worst.effect]:
            worst = Decision(d.effect, d.rule, d.mask, d.reason, via=label)
    return worst


@dataclass(frozen=True, slots=True)
class FeatureAttributes:
    view: str
    feature: str
    tags: Mapping[str, str]
    owner: str

    @classmethod
    def of(cls, view: AnyView, feature: str) -> FeatureAttributes:
        field = view.field(feature)
        tags = {**view.tags, **(field.tags if field is not None else {})}
        return cls(view.name, feature, tags, view.owner)


def decide(
    policies: Iterable[Policy], default: str, feature: FeatureAttributes, model: Model
) -> Decision:
    matching = [
        p
        for p in policies
        if p.features.matches(feature.view, feature.feature, feature.tags, feature.owner)
        and p.models.matches(model.name, model.purpose, model.owner)
    ]
    if not matching:
        return Decision(default, None)
    best = min(matching, key=lambda p: (_RANK[p.effect], p.name))
    return Decision(
        best.effect, best.name, best.mask if best.effect == MASK else None, best.description
    )


class ModelDecisions:
    """One model's decisions for the features it reads, from one registry snapshot."""

    def __init__(self, model: Model, policies: Sequence[Policy], default: str) -> None:
        self.model = model
        self.policies = tuple(policies)
        self.default = default
        self._cache: dict[tuple[str, int, str], Decision] = {}

    def decision(self, view: AnyView, version: int, feature: str) -> Decision:
        key = (view.name, version, feature)
        found = self._cache.get(key)
        if found is None:
            found = decide(
                self.policies, self.default, FeatureAttributes.of(view, feature), self.model
            )
            self._cache[key] = found
        return found

    def check(self, view: AnyView, version: int, feature: str) -> Decision:
        """The decision, or PolicyDeniedError naming the rule."""
        d = self.decision(view, version, feature)
        if d.effect == DENY:
            raise self.denial(view, version, feature, d)
        return d

    def denial(self, view: AnyView, version: int, feature: str, d: Decision) -> PolicyDeniedError:
        return PolicyDeniedError(
            f"Model '{self.model.name}' may not use {view.name}@v{version}:{feature}: "
            f"denied by {d.because()}.",
            model=self.model.name,
            feature=f"{view.name}@v{version}:{feature}",
            rule=d.rule or "default",
        )


def model_decisions(snapshot: Any, model: str, default: str) -> ModelDecisions:
    """A registry snapshot's decisions for one model (its active policies)."""
    policies = [snapshot.policy(name) for name in sorted(snapshot.active("policy"))]
    return ModelDecisions(snapshot.model(model), policies, default)


def policy_decisions(
    snapshot: Any,
    model: str,
    resolved: Sequence[Any],
    default: str,
    on_deny: Callable[[Any, Decision, PolicyDeniedError], None] | None = None,
) -> list[Decision]:
    """The decision for each of a model's ``resolved`` features; a denied one raises
    PolicyDeniedError (after ``on_deny(feature, decision, error)``, e.g. to audit it)."""
    decisions = model_decisions(snapshot, model, default)
    found = []
    for f in resolved:
        view = snapshot.any_view(f.view, f.version)
        d = feature_decision(snapshot, decisions, f)
        if d.effect == DENY:
            exc = decisions.denial(view, f.version, f.feature, d)
            if on_deny is not None:
                on_deny(f, d, exc)
            raise exc
        found.append(d)
    return found


def feature_decision(snapshot: Any, decisions: ModelDecisions, f: Any) -> Decision:
    """The decision for one resolved feature (on-demand ones: derived from their inputs)."""
    view = snapshot.any_view(f.view, f.version)
    own = decisions.decision(view, f.version, f.feature)
    if not isinstance(view, OnDemandFeatureView):
        return own
    inputs = (
        (str(i), decisions.decision(snapshot.feature_view(i.view, i.version), i.version, i.feature))
        for i in snapshot.on_demand_inputs(f.view, f.version)
    )
    return derived(own, inputs)


def masks_of(decisions: Sequence[Decision]) -> list[tuple[int, str]]:
    """``(index, hash | redact)`` of each masked feature."""
    return [(i, d.mask or "hash") for i, d in enumerate(decisions) if d.effect == MASK]


@functools.lru_cache(maxsize=16)
def _keyed(key: bytes) -> Any:
    # BLAKE2b in keyed mode is a MAC, and ~3x faster per value than HMAC-SHA256 here; the
    # key (any length) is condensed to the 32 bytes BLAKE2b takes.
    return hashlib.blake2b(key=hashlib.sha256(key).digest(), digest_size=8)


def masker(how: str, key: bytes) -> Callable[[Any], Any]:
    """``hash``: a keyed hash (BLAKE2b-MAC, 16 hex digits) that joins like the raw value but
    does not reveal it; ``redact``: null. Nulls stay null."""
    if how == "redact":
        return lambda _value: None
    base = _keyed(key)

    def mask(value: Any) -> Any:
        if value is None:
            return None
        h = base.copy()
        h.update(value if isinstance(value, bytes) else repr(value).encode())  # 1 and 1.0 differ
        return h.hexdigest()

    return mask


def mask_value(value: Any, how: str, key: bytes) -> Any:
    """One value masked (see ``masker``, which masks many with one key setup)."""
    return masker(how, key)(value)
