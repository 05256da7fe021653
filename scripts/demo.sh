#!/usr/bin/env bash
# Set up and run the example end to end: local services, source data, plan,
# apply, versions. Safe to run again: every step is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
REPO=feature_repo

step() { printf '\n\033[1;34m### %s\033[0m\n$ %s\n' "$1" "$2"; eval "$2"; }

step "Start a local Redis and Kafka-protocol broker" "featurestore dev up -r $REPO"
step "Generate the example sources (seeded, ~1.1M rows)" "featurestore generate-data -r $REPO"
step "What would change in the registry?" "featurestore plan -r $REPO"
step "Apply the definitions (atomic, idempotent)" "featurestore apply -r $REPO"
step "Applying again changes nothing" "featurestore apply -r $REPO"
step "Registered objects" "featurestore list -r $REPO"
step "Versions of a view" "featurestore versions user_profile -r $REPO"
step "Which view versions fraud_detector reads" "featurestore resolve --model fraud_detector -r $REPO"
step "Load the batch views' offline store from their sources (local backfill)" \
  "python -m pipelines.backfill_offline --repo $REPO"
step "Build a point-in-time correct training set for fraud_detector" \
  "featurestore training-data -r $REPO --model fraud_detector --entities $REPO/data/labels.parquet --out $REPO/data/training/fraud_detector.parquet"
step "Lineage: which data trained which model" "featurestore training-sets -r $REPO --model fraud_detector"

# Versions: change a dtype in a scratch copy of the repo (own registry), apply,
# and see v2 beside v1, with v1 still resolvable and the models still on it.
SCRATCH=$(mktemp -d)
cp "$REPO"/*.py "$REPO"/featurestore.yaml "$SCRATCH"/
step "Scratch copy of the repo, applied as is" "featurestore apply -r $SCRATCH >/dev/null && featurestore list feature_view -r $SCRATCH"
step "Change credit_limit from Float64 to float32" \
  "sed -i 's/Field(name=\"credit_limit\", dtype=Float64)/Field(name=\"credit_limit\", dtype=\"float32\")/' $SCRATCH/user_profile.py && featurestore plan -r $SCRATCH"
step "Apply: a new immutable version" "featurestore apply -r $SCRATCH"
step "v2 beside v1" "featurestore versions user_profile -r $SCRATCH"
step "v1 stays resolvable" "featurestore resolve user_profile@v1:credit_limit user_profile:credit_limit -r $SCRATCH"
rm -rf "$SCRATCH"

step "Local services" "featurestore dev status -r $REPO"
printf '\nDone. Stop the services with: .venv/bin/featurestore dev down -r %s\n' "$REPO"
