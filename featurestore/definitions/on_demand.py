"""OnDemandFeatureView: features computed at request time from looked-up values and
request fields, with the same function in lookups and in training sets.

Feast-familiar: ``sources`` lists feature views (all their features), ``view[[...]]``
projections and ``RequestSource`` objects; ``schema`` lists the outputs. Modes:

- ``python`` (the default): the function takes one row's inputs as a dict
  ``{feature or request field: value}`` and returns ``{output: value}``. A lookup then
  imports nothing more. ``singleton=False`` gives it columns instead (``{name: [values]}``
  in, ``{output: [values]}`` out), as Feast's python mode does by default.
- ``pandas``: the function takes a DataFrame of inputs and returns one with the outputs
  (Feast's default mode; pandas is imported when such a view is first computed).

The version (DESIGN.md, "Versions") is derived from the function's code, its mode, its
outputs, its request fields and its input views' versions: a changed function, or a new
version of an input view, makes ``vN+1``, and a model pinned to ``vN`` keeps reading the
inputs ``vN`` was built on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from featurestore.definitions._base import (
    SourceLocation,
    check_name,
    check_str,
    check_tags,
    first_not,
    got,
    metadata_spec,
    set_location,
)
from featurestore.definitions.feature_view import (
    FeatureProjection,
    FeatureView,
    fingerprint,
    projection,
)
from featurestore.definitions.field import Field, checked_schema
from featurestore.definitions.function_code import FunctionCode, function_code
from featurestore.definitions.request_source import RequestSource
from featurestore.errors import DefinitionError, did_you_mean

MODES = ("python", "pandas")
ON_DEMAND = "on_demand"  # the ``type`` of an on-demand view's specs

OnDemandSource = FeatureView | FeatureProjection | RequestSource | str


@dataclass(frozen=True, slots=True)
class ViewInput:
    """Features of one input view; ``fingerprint`` is its version's (bound at apply)."""

    view: str
    features: tuple[str, ...]  # () until resolved: all of the view's features
    fingerprint: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OnDemandFeatureView:
    kind: ClassVar[str] = "feature_view"

    name: str
    sources: Sequence[OnDemandSource]
    schema: Sequence[Field]
    function: Callable[..., Any] | FunctionCode
    mode: str = "python"
    singleton: bool = True
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    location: SourceLocation | None = field(default=None, compare=False, repr=False)
    # Filled from ``sources`` (and by the repo loader, which resolves view names).
    inputs: tuple[ViewInput, ...] = field(init=False, compare=False, repr=False, default=())
    requests: tuple[RequestSource, ...] = field(init=False, compare=False, repr=False, default=())
    code: FunctionCode | None = field(init=False, compare=False, repr=False, default=None)

    online: ClassVar[bool] = True
    expectations: ClassVar[tuple[()]] = ()
    aggregations: ClassVar[tuple[()]] = ()

    def __post_init__(self) -> None:
        check_name("OnDemandFeatureView", self.name)
        owner = f"OnDemandFeatureView '{self.name}'"
        if self.mode not in MODES:
            raise DefinitionError(
                f"{owner}: mode must be 'python' or 'pandas' (got {self.mode!r})."
                f"{did_you_mean(str(self.mode), MODES)}"
            )
        if not isinstance(self.singleton, bool):
            raise DefinitionError(f"{owner}: 'singleton' must be a bool ({got(self.singleton)}).")
        sources = tuple(self.sources) if isinstance(self.sources, list | tuple) else ()
        kinds = (FeatureView, FeatureProjection, RequestSource, str)
        if not sources or not all(isinstance(s, kinds) for s in sources):
            bad = first_not(kinds, sources) if sources else self.sources
            raise DefinitionError(
                f"{owner}: 'sources' must be a non-empty list of FeatureViews, view[[...]] "
                f"projections, RequestSources or view names ({got(bad)})."
            )
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "schema", checked_schema(owner, self.schema, what="features"))
        if not callable(self.function) and not isinstance(self.function, FunctionCode):
            raise DefinitionError(f"{owner}: 'function' must be a function ({got(self.function)}).")
        if self.mode == "python" and callable(self.function):
            _check_not_pandas(owner, self.function)
        object.__setattr__(self, "code", function_code(self.function, owner))  # type: ignore[arg-type]
        check_str(owner, "description", self.description)
        check_str(owner, "owner", self.owner)
        object.__setattr__(self, "tags", check_tags(owner, self.tags))
        inputs: list[ViewInput] = []
        requests: list[RequestSource] = []
        for s in sources:
            if isinstance(s, RequestSource):
                requests.append(s)
            elif isinstance(s, FeatureView):
                inputs.append(ViewInput(s.name, tuple(s.feature_names)))
            elif isinstance(s, FeatureProjection):
                inputs.append(ViewInput(s.view, s.features))
            else:
                inputs.append(ViewInput(s, ()))
        object.__setattr__(self, "inputs", tuple(inputs))
        object.__setattr__(self, "requests", tuple(requests))
        self._check_inputs(owner)
        set_location(self)

    def _check_inputs(self, owner: str) -> None:
        seen: dict[str, str] = {}
        for vi in self.inputs:
            for f in vi.features:
                if f in seen:
                    raise DefinitionError(
                        f"{owner}: input '{f}' comes from both {seen[f]} and {vi.view}; the "
                        "function sees inputs by name, so project one of them away "
                        f"({vi.view}[[...]])."
                    )
                seen[f] = vi.view
        for r in self.requests:
            for f in r.field_names:
                if f in seen:
                    raise DefinitionError(
                        f"{owner}: request field '{f}' of {r.name} has the name of an input of "
                        f"{seen[f]}; rename one."
                    )
                seen[f] = r.name
        views = [vi.view for vi in self.inputs]
        if len(set(views)) != len(views):
            raise DefinitionError(f"{owner}: a view is listed twice in 'sources'.")

    # -- names ------------------------------------------------------------------

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.schema]

    @property
    def request_fields(self) -> list[Field]:
        return [f for r in self.requests for f in r.schema]

    @property
    def input_views(self) -> list[str]:
        return [vi.view for vi in self.inputs]

    def field(self, name: str) -> Field | None:
        return next((f for f in self.schema if f.name == name), None)

    def __getitem__(self, features: str | Sequence[str]) -> FeatureProjection:
        owner = f"OnDemandFeatureView '{self.name}'"
        return projection(owner, self.name, self.feature_names, features)

    def with_inputs(self, inputs: Sequence[ViewInput]) -> OnDemandFeatureView:
        """A copy with the input views resolved (features listed, versions fingerprinted)."""
        import copy

        other = copy.copy(self)
        object.__setattr__(other, "inputs", tuple(inputs))
        return other

    def resolve(self, views: dict[str, Any]) -> OnDemandFeatureView:
        """Bind the inputs to ``views`` (stored FeatureViews, by name)."""
        out = []
        for vi in self.inputs:
            view = views[vi.view]
            features = vi.features or tuple(view.feature_names)
            out.append(ViewInput(vi.view, features, fingerprint(view.version_spec())))
        return self.with_inputs(out)

    # -- specs ------------------------------------------------------------------

    def version_spec(self) -> dict[str, Any]:
        unbound = [vi.view for vi in self.inputs if not vi.fingerprint]
        if unbound:
            raise DefinitionError(
                f"OnDemandFeatureView '{self.name}': input view(s) {', '.join(unbound)} are "
                "not resolved; load it through the feature repo."
            )
        assert self.code is not None
        return {
            "type": ON_DEMAND,
            "mode": self.mode,
            "singleton": self.singleton,
            "function": self.code.fingerprint,
            "inputs": [
                {"view": vi.view, "features": list(vi.features), "fingerprint": vi.fingerprint}
                for vi in self.inputs
            ],
            "request": [r.version_spec() for r in self.requests],
            "schema": [f.version_spec() for f in self.schema],
        }

    def to_spec(self) -> dict[str, Any]:
        assert self.code is not None
        return {
            "type": ON_DEMAND,
            "name": self.name,
            "mode": self.mode,
            "singleton": self.singleton,
            "sources": [{"view": vi.view, "features": list(vi.features)} for vi in self.inputs]
            + [{"request": r.name} for r in self.requests],
            "schema": [f.to_spec() for f in self.schema],
            "function": self.code.to_spec(),
            "online": True,
            **metadata_spec(self),
        }

    @classmethod
    def from_spec(
        cls,
        spec: dict[str, Any],
        version_spec: dict[str, Any] | None = None,
    ) -> OnDemandFeatureView:
        """Rebuild from a registry version (``version_spec`` binds input fingerprints)."""
        bound = {i["view"]: i for i in (version_spec or {}).get("inputs", [])}
        requests = {
            r["name"]: RequestSource.from_spec(r) for r in (version_spec or {}).get("request", [])
        }
        sources: list[OnDemandSource] = []
        for s in spec["sources"]:
            if "request" in s:
                sources.append(requests.get(s["request"]) or s["request"])
            else:
                sources.append(FeatureProjection(s["view"], tuple(s["features"])))
        view = cls(
            name=spec["name"],
            sources=[s for s in sources if not isinstance(s, str)],
            schema=[Field.from_spec(f) for f in spec["schema"]],
            function=FunctionCode.from_spec(spec["function"]),
            mode=spec["mode"],
            singleton=spec.get("singleton", True),
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=spec.get("tags", {}),
        )
        if bound:
            view = view.with_inputs(
                [
                    ViewInput(vi.view, vi.features, bound.get(vi.view, {}).get("fingerprint", ""))
                    for vi in view.inputs
                ]
            )
        return view


def _check_not_pandas(owner: str, fn: Callable[..., Any]) -> None:
    """A python-mode function annotated with DataFrames was meant for pandas mode (Feast's
    default): say so now, not at the first lookup."""
    annotations = getattr(fn, "__annotations__", {}) or {}
    if any("DataFrame" in str(a) for a in annotations.values()):
        raise DefinitionError(
            f"{owner}: function '{getattr(fn, '__name__', fn)}' is annotated with DataFrames "
            "but mode is 'python' (one row's dict in, a dict out). Pass mode='pandas' (Feast's "
            "default) or write it over a dict."
        )


def on_demand_feature_view(
    *,
    sources: Sequence[OnDemandSource],
    schema: Sequence[Field],
    mode: str = "python",
    singleton: bool = True,
    name: str | None = None,
    description: str = "",
    owner: str = "",
    tags: dict[str, str] | None = None,
) -> Callable[[Callable[..., Any]], OnDemandFeatureView]:
    """Decorator: the function becomes an OnDemandFeatureView named after it."""

    def wrap(fn: Callable[..., Any]) -> OnDemandFeatureView:
        return OnDemandFeatureView(
            name=name or fn.__name__,
            sources=sources,
            schema=schema,
            function=fn,
            mode=mode,
            singleton=singleton,
            description=description,
            owner=owner,
            tags=tags or {},
        )

    return wrap
