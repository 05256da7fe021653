"""Card-holder profile features (batch, daily)."""

from datetime import timedelta

from entities import user
from sources import user_profile_source

from featurestore import (
    FeatureView,
    Field,
    Float64,
    Int64,
    String,
    expect_between,
    expect_in_set,
    expect_not_null,
)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    source=user_profile_source,
    schema=[
        Field(name="email", dtype=String, tags={"pii": "true"}, description="Contact e-mail."),
        Field(name="age", dtype=Int64),
        Field(name="country", dtype=String),
        Field(name="account_age_days", dtype=Int64),
        Field(name="credit_limit", dtype=Float64),
    ],
    ttl=timedelta(days=90),  # profiles change rarely: a snapshot serves for a quarter
    expectations=[
        expect_not_null("user_id"),
        expect_between("age", 18, 120),
        expect_in_set("country", ["DE", "FR", "GB", "NL", "ES", "IT", "US", "PL"]),
        expect_between("credit_limit", 0, 100_000),
    ],
    owner="risk-data@example.com",
    description="Who the card holder is, from the accounts database.",
    tags={"team": "risk", "sensitivity": "high"},
)
