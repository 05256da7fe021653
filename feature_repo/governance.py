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
    # The demo's traffic is small: sample half of the lookups, judge from 200 values.
    # A busy service samples far less (0.01 of 1,000 lookups/s is 10 samples a second).
    sample_rate=0.5,
    min_samples=200,
    window=timedelta(minutes=30),
    owner="risk-ml@example.com",
    description="Alerts when live fraud features move away from the training data.",
)
