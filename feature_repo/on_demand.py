"""Request-time features: computed at each lookup from the transaction being scored and
the user's stored windows, and by the same function over the training set's rows."""

from typing import Any

from user_transactions import user_txn_stats

from featurestore import Field, Float64, RequestSource, on_demand_feature_view

transaction = RequestSource(
    name="transaction",
    schema=[Field(name="amount", dtype=Float64, description="The amount being authorised.")],
    description="The card authorisation being scored: sent with each fraud_detector lookup.",
    owner="payments-platform@example.com",
)


@on_demand_feature_view(
    sources=[user_txn_stats[["count_1h", "amount_sum_1h"]], transaction],
    schema=[Field(name="amount_vs_1h_avg", dtype=Float64)],
    owner="risk-ml@example.com",
    description="The transaction's amount against the user's average over the last hour.",
    tags={"team": "risk", "freshness": "request"},
)
def txn_amount_vs_1h(row: dict[str, Any]) -> dict[str, float | None]:
    count, total, amount = row["count_1h"], row["amount_sum_1h"], row["amount"]
    # No 1-hour history (or only zero amounts): no average to compare with.
    if amount is None or not count or not total:
        return {"amount_vs_1h_avg": None}
    return {"amount_vs_1h_avg": amount / (total / count)}
