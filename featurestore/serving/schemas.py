"""The feature server's request and response models, for /docs and docs/openapi.json only:
the lookup path parses with orjson, and validation is the lookup's own."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class FeaturesRequest(BaseModel):
    """Ask with ``model`` (reads its pinned versions; the key's model if left out) or
    ``features`` (under the key's model's policies), not both."""

    model: str | None = Field(None, examples=["fraud_detector"])
    features: list[str] | None = Field(
        None,
        description="Feature references (view:feature, view@v2:feature) or service names.",
        examples=[["user_profile:credit_limit", "merchant_stats@v1:category"]],
    )
    entities: list[dict[str, Any]] | dict[str, list[Any]] = Field(
        ...,
        description=(
            "Rows ({join key: value}) or columns ({join key: [values]}). Request fields of "
            'on-demand views go beside the join keys, e.g. {"amount": 120.5}.'
        ),
        examples=[[{"user_id": 1001, "merchant_id": "m_0001", "amount": 120.5}]],
    )
    full_feature_names: bool = Field(False, description="Name outputs view__feature.")


class FeatureColumn(BaseModel):
    values: list[Any]
    statuses: list[str] = Field(
        description="present | missing | expired | error (an on-demand value that failed), "
        "per entity row"
    )
    event_timestamps: list[str | None]
    errors: list[str | None] | None = Field(
        None,
        description="Only for an on-demand feature with a failed row: why, per entity row",
    )


class FeaturesResponse(BaseModel):
    metadata: dict[str, Any] = Field(
        description="model, feature_names (output names), features (resolved references)"
    )
    entities: dict[str, list[Any]]
    results: list[FeatureColumn] = Field(description="One column per feature, in order.")


class ErrorResponse(BaseModel):
    error: str = Field(description="The error type, e.g. FeatureNotFound")
    detail: str = Field(description="What went wrong and what to do")
    request_id: str | None = Field(None, description="On a 500: the id of its log entry")


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema
