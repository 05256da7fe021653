"""Feature services and the models that consume them."""

from merchant_stats import merchant_stats
from on_demand import txn_amount_vs_1h
from user_profile import user_profile
from user_transactions import user_txn_stats

from featurestore import FeatureService, Model

fraud_features = FeatureService(
    name="fraud_features",
    features=[
        user_profile[["age", "country", "account_age_days", "credit_limit"]],
        merchant_stats,
        user_txn_stats,
        txn_amount_vs_1h,  # needs the request's amount in each entity row
    ],
    owner="risk-ml@example.com",
    description="Everything the real-time fraud model scores a transaction with.",
)

promo_features = FeatureService(
    name="promo_features",
    features=[
        user_profile[["age", "country", "account_age_days"]],
        merchant_stats[["category", "avg_ticket_30d"]],
    ],
    owner="growth-ml@example.com",
    description="Features for ranking promotional offers.",
)

fraud_detector = Model(
    name="fraud_detector",
    feature_services=[fraud_features],
    purpose="fraud",
    owner="risk-ml@example.com",
    description="Scores card authorisations for fraud in real time.",
)

promo_ranker = Model(
    name="promo_ranker",
    feature_services=[promo_features],
    purpose="marketing",
    owner="growth-ml@example.com",
    description="Ranks promotional offers shown in the banking app.",
)
