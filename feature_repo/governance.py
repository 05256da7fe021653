"""Policies and drift monitors."""

from datetime import timedelta

from models import fraud_detector

from featurestore import DriftMonitor, FeatureMatch, ModelMatch, Policy

no_pii_for_marketing = Policy(
    name="no_pii_for_marketing",
    effect="deny",
    features=FeatureMatch(tags={"pii": "true"}),
    models=ModelMatch(purposes=["marketing"]),
    description="Marketing models never see personal data.",
    owner="privacy@example.com",
)

fraud_detector_drift = DriftMonitor(
    name="fraud_detector_drift",
    model=fraud_detector,
    features=[
        "user_txn_stats:amount_sum_1h",
        "user_txn_stats:count_1h",
        "merchant_stats:chargeback_rate_30d",
        "user_profile:country",
    ],
    psi_warn=0.1,
    psi_drift=0.25,
    js_warn=0.1,
    js_drift=0.2,
    max_staleness=timedelta(minutes=5),
    sample_rate=0.05,
    window=timedelta(minutes=15),
    owner="risk-ml@example.com",
    description="Alerts when live fraud features move away from the training data.",
)
