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
step "Local services" "featurestore dev status -r $REPO"
printf '\nDone. Stop the services with: .venv/bin/featurestore dev down -r %s\n' "$REPO"
