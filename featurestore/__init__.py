"""featurestore: versioned, lineage-tracked features for training and serving.

Feature repo files import their definitions from here::

    from featurestore import Entity, FeatureView, Field, Float64, ParquetSource
"""

from featurestore.definitions import (
    Aggregation,
    DriftMonitor,
    Entity,
    Expectation,
    FeatureMatch,
    FeatureProjection,
    FeatureService,
    FeatureView,
    Field,
    KafkaSource,
    Model,
    ModelMatch,
    OnDemandFeatureView,
    ParquetSource,
    Policy,
    RequestSource,
    expect_between,
    expect_in_set,
    expect_match_regex,
    expect_not_null,
    on_demand_feature_view,
)
from featurestore.dtypes import (
    Array,
    Bool,
    Bytes,
    DType,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    Timestamp,
    UnixTimestamp,
)
from featurestore.errors import FeatureStoreError
from featurestore.references import FeatureRef, parse_reference
from featurestore.store import FeatureStore

__version__ = "0.1.0"

__all__ = [
    "Aggregation",
    "Array",
    "Bool",
    "Bytes",
    "DType",
    "DriftMonitor",
    "Entity",
    "Expectation",
    "FeatureMatch",
    "FeatureProjection",
    "FeatureRef",
    "FeatureService",
    "FeatureStore",
    "FeatureStoreError",
    "FeatureView",
    "Field",
    "Float32",
    "Float64",
    "Int32",
    "Int64",
    "KafkaSource",
    "Model",
    "ModelMatch",
    "OnDemandFeatureView",
    "ParquetSource",
    "Policy",
    "RequestSource",
    "String",
    "Timestamp",
    "UnixTimestamp",
    "__version__",
    "expect_between",
    "expect_in_set",
    "expect_match_regex",
    "expect_not_null",
    "on_demand_feature_view",
    "parse_reference",
]
