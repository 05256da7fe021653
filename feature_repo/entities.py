"""Who the features describe."""

from featurestore import Entity, Int64, String

user = Entity(
    name="user",
    join_key="user_id",
    dtype=Int64,
    description="A card holder.",
    owner="risk-data@example.com",
)

merchant = Entity(
    name="merchant",
    join_key="merchant_id",
    dtype=String,
    description="A merchant accepting card payments, e.g. 'm_00042'.",
    owner="risk-data@example.com",
)
