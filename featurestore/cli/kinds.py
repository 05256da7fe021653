"""Object kinds as people type them on the command line: ``feature_view``, ``view``,
``FeatureView``, ``views``... for ``plan --only`` and ``list KIND``."""

from __future__ import annotations

from collections.abc import Iterable

from featurestore.definitions import KINDS
from featurestore.errors import UsageError
from featurestore.registry.plan_render import LABELS

# Short names people use; the kind itself, its label and plurals are accepted too.
_SHORT = {"view": "feature_view", "service": "feature_service", "monitor": "drift_monitor"}


def _aliases() -> dict[str, str]:
    out: dict[str, str] = {}
    for kind in KINDS:
        for name in (kind, kind.replace("_", ""), LABELS[kind].lower()):
            out[name] = kind
    out.update(_SHORT)
    out.update({f"{name}s": kind for name, kind in list(out.items())})
    out["entities"] = "entity"
    out["policies"] = "policy"
    return out


ALIASES = _aliases()


def parse_kinds(values: Iterable[str] | None, option: str) -> frozenset[str] | None:
    """The kinds named by ``values`` (each may be a comma list), or None for all kinds.
    An unknown name raises UsageError naming ``option`` and the kinds it takes."""
    if values is None:
        return None
    kinds: set[str] = set()
    for value in values:
        for item in value.split(","):
            word = item.strip().lower().replace("-", "_")
            if not word:
                continue
            if word not in ALIASES:
                raise UsageError(
                    f"{option}: unknown kind {item.strip()!r}. Kinds: {', '.join(KINDS)} "
                    "(or view, service, monitor); several as a comma list, e.g. "
                    "feature_view,model."
                )
            kinds.add(ALIASES[word])
    return frozenset(kinds) or None
