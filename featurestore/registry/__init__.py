"""The versioned registry: every applied revision of every object, and lineage."""

from featurestore.registry.runs import RunRecord
from featurestore.registry.snapshot import (
    Head,
    RegistrySnapshot,
    ResolvedFeature,
    ViewVersion,
)
from featurestore.registry.store import ApplyResult, Registry, Revision, TrainingSetRecord

__all__ = [
    "ApplyResult",
    "Head",
    "Registry",
    "RegistrySnapshot",
    "ResolvedFeature",
    "Revision",
    "RunRecord",
    "TrainingSetRecord",
    "ViewVersion",
]
