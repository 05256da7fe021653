"""The catalog of a lookup client: a registry snapshot, its API keys, and compiled plans.

Authentication, policies and sample rates are decided here once per snapshot (per model or
feature list, and key), so a lookup pays a dictionary lookup for them.

This module is on the online read path: no pyspark, pandas or great_expectations.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from featurestore.errors import AccessDeniedError, EntityInputError
from featurestore.online.layout import drift_key, served_key
from featurestore.online.plan import LookupPlan, compile_plan
from featurestore.policy.keys import Credential, KeyRing
from featurestore.references import is_feature_reference
from featurestore.registry.snapshot import RegistrySnapshot, ResolvedFeature

MAX_ADHOC_PLANS = 10_000  # compiled feature lists (and denials) kept per catalog


class Catalog:
    """A registry snapshot, its API keys, and the lookup plans compiled from them.

    Policies are decided when a plan is compiled (once per model or feature list, key
    and registry change), so a lookup pays a dictionary lookup for them. A denial is
    remembered too: a caller repeating a denied request is refused without re-deciding.
    ``on_decision`` hears each denied lookup and each masked plan (per mask rule), to
    audit them; the audit queue coalesces them per key, rule and window.

    Plans compile on first use. Built with ``previous`` (the catalog of an older
    snapshot), a catalog starts with the previous plans whose inputs did not change: the
    model's revision, its services', the view versions it reads (and whether their
    views are active), its key, its sample rate; all of them go when the policies, the
    policy default or the mask key change. An apply that touches one model of 100,000
    recompiles one plan. ``stats()`` counts compiled and carried plans.
    """

    def __init__(
        self,
        snapshot: RegistrySnapshot,
        *,
        policy_default: str = "allow",
        mask_key: bytes = b"",
        keys: KeyRing | None = None,
        on_decision: Callable[[dict[str, Any]], None] | None = None,
        previous: Catalog | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.policy_default = policy_default
        self.mask_key = mask_key
        self.keys = keys if keys is not None else KeyRing(snapshot.project)
        self.on_decision = on_decision
        self._plans: dict[Any, LookupPlan] = {}
        # What each plan was compiled from, as ``RegistrySnapshot.changes_since`` names it.
        self._inputs: dict[Any, frozenset[tuple[Any, ...]]] = {}
        self._adhoc = 0  # plans of feature lists: unbounded in number, so capped
        self.compiled = 0
        self.carried = 0
        # A denied request's error and its audit fields, told again on each repeat.
        self._denied: dict[Any, tuple[AccessDeniedError, dict[str, Any]]] = {}
        self._verified: dict[str, Credential] = {}
        self._rates: dict[str, float] | None = None
        if previous is not None:
            self._carry(previous)

    @property
    def serial(self) -> int:
        return self.snapshot.serial

    def authenticate(self, key: str, now: datetime | None = None) -> Credential:
        """The credential of ``key`` (AuthenticationError if it is not a live key of this
        project; AccessDeniedError if its model is gone from the registry). Verified keys
        are remembered for this snapshot: a lookup then pays a dictionary lookup."""
        credential = self._verified.get(key)
        if credential is not None and (
            credential.expires_at is None or credential.expires_at > (now or datetime.now(UTC))
        ):
            return credential
        credential = self.keys.authenticate(key, now or datetime.now(UTC))
        if not self.snapshot.is_active("model", credential.model):
            raise AccessDeniedError(
                f"API key {credential.label} belongs to model '{credential.model}', which "
                f"is no longer registered in project '{self.snapshot.project}'."
            )
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[key] = credential
        return credential

    def plan(
        self,
        *,
        model: str | None = None,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
        caller: Credential | None = None,
    ) -> LookupPlan:
        """The plan of a request; with ``caller`` (an authenticated key), only its model may
        be asked for (the default), and its model's policies decide feature lists too."""
        if caller is not None and model is None and features is None:
            model = caller.model  # a key names its model
        if (model is None) == (features is None):
            raise EntityInputError(
                "Ask for a model's features (model=...) or for a list of feature references "
                "and feature-service names (features=[...]), not both or neither."
            )
        if caller is not None and model is not None and model != caller.model:
            raise AccessDeniedError(
                f"API key {caller.label} belongs to model '{caller.model}'; it may not read "
                f"model '{model}'. Ask with that model's key, or with features=[...] under "
                f"'{caller.model}'s policies."
            )
        key = (
            model,
            tuple(features) if features is not None else None,
            full_feature_names,
            caller.key_id if caller is not None else None,
        )
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        denied = self._denied.get(key)
        if denied is not None:
            self._tell(**denied[1])
            raise copy.copy(denied[0])
        # Unbounded ad-hoc feature lists, allowed or denied, must not leak memory. Model
        # plans are bounded by the registry (models and keys) and stay.
        if self._adhoc > MAX_ADHOC_PLANS or len(self._denied) > MAX_ADHOC_PLANS:
            self._forget_adhoc()
        if model is not None:
            resolved = self.snapshot.resolve_model(model)
        else:
            if not features:
                raise EntityInputError("features=[] asks for nothing; name at least one.")
            resolved = self.snapshot.resolve_all(list(features))
        plan = compile_plan(
            self.snapshot, resolved, model=model, full_feature_names=full_feature_names
        )
        policy_model = model or (caller.model if caller is not None else None)
        if policy_model is not None:
            told: dict[str, Any] = {}
            try:
                plan = self._with_policies(plan, policy_model, resolved, caller, features, told)
            except AccessDeniedError as exc:
                # A copy, without the traceback: its frames hold this catalog, and a cycle
                # would keep a replaced catalog (its whole snapshot) alive until a full
                # collection, or for good where the server froze it (serving/heap.py).
                self._denied[key] = (copy.copy(exc), told)
                raise
            rate = self._sample_rates().get(policy_model)
            if rate:
                project = self.snapshot.project
                plan = replace(
                    plan,
                    sample_rate=rate,
                    served_key=served_key(project, policy_model),
                    drift_key=drift_key(project, policy_model),
                )
        # Inputs first: a catalog carrying plans over copies plans, then inputs.
        self._inputs[key] = self._inputs_of(
            [*resolved, *plan.on_demand.hidden], model, features, policy_model
        )
        self._plans[key] = plan
        self.compiled += 1
        self._adhoc += model is None
        return plan

    def stats(self) -> dict[str, int]:
        """Plans held, compiled here, and carried over from the previous catalog."""
        return {"plans": len(self._plans), "compiled": self.compiled, "carried": self.carried}

    def _forget_adhoc(self) -> None:
        for key in [k for k in self._plans if k[0] is None]:
            self._plans.pop(key, None)
            self._inputs.pop(key, None)
        self._denied.clear()
        self._adhoc = 0

    def _inputs_of(
        self,
        resolved: Sequence[ResolvedFeature],
        model: str | None,
        features: Sequence[str] | None,
        policy_model: str | None,
    ) -> frozenset[tuple[Any, ...]]:
        """What a plan was compiled from, in ``RegistrySnapshot.changes_since``'s terms.

        A view's source head is not among them: build_view takes only brokers, bounds and
        metadata from it, which no plan uses."""
        inputs: set[tuple[Any, ...]] = set()
        for f in resolved:  # on-demand views' hidden inputs included
            inputs.add(("vv", f.view, f.version))
            inputs.add(("live", f.view))
            if model is None:  # 'view:feature' follows the view's latest version
                inputs.add(("head", "feature_view", f.view))
        if model is not None:
            inputs.add(("head", "model", model))
            for service in self.snapshot.model(model).service_names:
                inputs.add(("head", "feature_service", service))
        for item in features or ():
            if not is_feature_reference(item):
                inputs.add(("head", "feature_service", item))
        if policy_model is not None:
            inputs.add(("head", "model", policy_model))  # its purpose and owner
        return frozenset(inputs)

    def _policy_inputs(self) -> tuple[Any, ...]:
        """What every plan under policies depends on."""
        policies = self.snapshot.active("policy")
        revisions = sorted((name, head.revision) for name, head in policies.items())
        return (self.policy_default, self.mask_key, tuple(revisions))

    def _carry(self, previous: Catalog) -> None:
        """Take over ``previous``'s plans whose inputs are unchanged in this snapshot."""
        if previous.snapshot.project != self.snapshot.project:
            return
        if previous._policy_inputs() != self._policy_inputs():
            return  # policies decide plans compiled without them too (feature lists by key)
        # Copies first: the previous catalog keeps serving, and compiling, meanwhile.
        plans = previous._plans.copy()
        inputs = previous._inputs.copy()
        changed = self.snapshot.changes_since(previous.snapshot)
        old_rates, new_rates = previous._sample_rates(), self._sample_rates()
        old_keys, new_keys = previous.keys, self.keys
        for key, plan in plans.items():
            used = inputs.get(key)
            if used is None or not changed.isdisjoint(used):
                continue
            who = plan.policy_model
            if who is not None and old_rates.get(who) != new_rates.get(who):
                continue
            key_id = key[3]
            if key_id is not None and old_keys.credential(key_id) != new_keys.credential(key_id):
                continue  # revoked, or otherwise changed: decided afresh
            self._inputs[key] = used
            self._plans[key] = plan
            self._adhoc += key[0] is None
        self.carried = len(self._plans)

    def _sample_rates(self) -> dict[str, float]:
        """Per monitored model, the serving log's sample rate (the highest of its monitors)."""
        if self._rates is None:
            rates: dict[str, float] = {}
            for head in self.snapshot.active("drift_monitor").values():
                model, rate = head.spec["model"], float(head.spec["sample_rate"])
                rates[model] = max(rate, rates.get(model, 0.0))
            self._rates = rates
        return self._rates

    def _with_policies(
        self,
        plan: LookupPlan,
        model: str,
        resolved: Sequence[Any],
        caller: Credential | None,
        requested: Sequence[str] | None,
        told: dict[str, Any],
    ) -> LookupPlan:
        """``plan`` under ``model``'s policies; a denial's audit fields go into ``told``."""
        from featurestore.policy.engine import masks_of, policy_decisions

        who = caller.label if caller is not None else None
        asked = list(requested) if requested is not None else None

        def denied(feature: Any, decision: Any, exc: Exception) -> None:
            told.update(
                action="deny",
                subject=model,
                decision="deny",
                rule=decision.rule or "default",
                detail={
                    "at": "online",
                    "key": who,
                    "features": [str(feature)],
                    "requested": asked,
                    "message": str(exc),
                },
            )
            self._tell(**told)

        decisions = policy_decisions(
            self.snapshot, model, resolved, self.policy_default, on_deny=denied
        )
        masks = masks_of(decisions)
        dtypes = list(plan.dtypes)
        for i, how in masks:
            dtypes[i] = "string" if how == "hash" else dtypes[i]
        by_rule: dict[str, list[str]] = {}
        for i, _how in masks:  # one record per rule: their number is the registry's
            by_rule.setdefault(decisions[i].rule or "default", []).append(plan.refs[i])
        for rule, refs in sorted(by_rule.items()):
            self._tell(
                action="mask",
                subject=model,
                decision="mask",
                rule=rule,
                detail={"at": "online", "key": who, "features": refs, "requested": asked},
            )
        return replace(
            plan,
            masks=tuple(masks),
            mask_key=self.mask_key,
            dtypes=tuple(dtypes),
            policy_model=model,
            decisions=tuple(d.effect for d in decisions),
        )

    def _tell(self, **record: Any) -> None:
        if self.on_decision is not None:
            self.on_decision(record)
