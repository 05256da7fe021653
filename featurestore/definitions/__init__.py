"""Definition objects that feature repo files build."""

from featurestore.definitions.aggregation import Aggregation
from featurestore.definitions.drift_monitor import DriftMonitor
from featurestore.definitions.entity import Entity
from featurestore.definitions.expectations import (
    Expectation,
    expect_between,
    expect_in_set,
    expect_match_regex,
    expect_not_null,
)
from featurestore.definitions.feature_service import FeatureService
from featurestore.definitions.feature_view import FeatureProjection, FeatureView
from featurestore.definitions.field import Field
from featurestore.definitions.model import Model
from featurestore.definitions.on_demand import OnDemandFeatureView, on_demand_feature_view
from featurestore.definitions.policy import FeatureMatch, ModelMatch, Policy
from featurestore.definitions.request_source import RequestSource
from featurestore.definitions.sources import KafkaSource, ParquetSource

Definition = (
    Entity
    | ParquetSource
    | KafkaSource
    | RequestSource
    | FeatureView
    | OnDemandFeatureView
    | FeatureService
    | Model
    | Policy
    | DriftMonitor
)
DEFINITION_TYPES = (
    Entity,
    ParquetSource,
    KafkaSource,
    RequestSource,
    FeatureView,
    OnDemandFeatureView,
    FeatureService,
    Model,
    Policy,
    DriftMonitor,
)
# Registry kinds in dependency order: apply and plan walk them in this order.
KINDS = ("entity", "source", "feature_view", "feature_service", "model", "policy", "drift_monitor")

__all__ = [
    "DEFINITION_TYPES",
    "KINDS",
    "Aggregation",
    "Definition",
    "DriftMonitor",
    "Entity",
    "Expectation",
    "FeatureMatch",
    "FeatureProjection",
    "FeatureService",
    "FeatureView",
    "Field",
    "KafkaSource",
    "Model",
    "ModelMatch",
    "OnDemandFeatureView",
    "ParquetSource",
    "Policy",
    "RequestSource",
    "expect_between",
    "expect_in_set",
    "expect_match_regex",
    "expect_not_null",
    "on_demand_feature_view",
]
