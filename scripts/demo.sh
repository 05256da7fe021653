#!/usr/bin/env bash
# Set up and run the example end to end: local services, source data, plan,
# apply, versions. Safe to run again: every step is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
REPO=feature_repo

step() { printf '\n\033[1;34m### %s\033[0m\n$ %s\n' "$1" "$2"; eval "$2"; }

# `./scripts/demo.sh --redis-cluster`: the same demo on a local 3-primary Redis Cluster.
UP="featurestore dev up -r $REPO"
if [[ "${1:-}" == "--redis-cluster" ]]; then
  export FEATURESTORE_REDIS_CLUSTER=true  # feature_repo/featurestore.yaml: online_store.cluster
  UP="$UP --redis-cluster 3"
fi

# A fresh start: the dev services keep their data in memory, so a restart empties them.
featurestore dev down -r $REPO >/dev/null 2>&1 || true
step "Start a local Redis and Kafka-protocol broker (in memory: each run starts empty)" "$UP"
step "Generate the example sources (seeded, ~1.1M rows)" "featurestore generate-data -r $REPO"
step "What would change in the registry?" "featurestore plan -r $REPO"
step "Apply the definitions (atomic, idempotent)" "featurestore apply -r $REPO"
step "Applying again changes nothing" "featurestore apply -r $REPO"
step "Registered objects" "featurestore list -r $REPO"
step "Versions of a view" "featurestore versions user_profile -r $REPO"
step "Which view versions fraud_detector reads" "featurestore resolve --model fraud_detector -r $REPO"
step "Materialize the batch views: validate, offline store, online store (small: in-process)" \
  "featurestore materialize -r $REPO"
step "Each run is recorded for lineage" "featurestore runs -r $REPO --limit 2"
step "Incremental, on Spark (what a cluster runs): only what arrived since the last run" \
  "featurestore materialize -r $REPO --incremental --engine spark"
step "Backfill the streaming view's history on Spark (the consumer's own window code, per user)" \
  "featurestore stream backfill user_txn_stats --from source -r $REPO"
step "Build a point-in-time correct training set for fraud_detector (and its reference profile)" \
  "featurestore training-data -r $REPO --model fraud_detector --entities $REPO/data/labels.parquet --out $REPO/data/training/fraud_detector.parquet"
step "Rebuild it exactly, as of the offline commits it read (the files they list are kept for it), checked against its fingerprint" \
  "featurestore training-sets rebuild -r $REPO --latest --model fraud_detector"
step "Its on-demand column amount_vs_1h_avg: txn_amount_vs_1h (feature_repo/on_demand.py) over each label's amount and the user's 1-hour window (which holds the transaction itself), the same function lookups run; rows with more than one transaction in the hour" \
  "python scripts/show_training_rows.py $REPO/data/training/fraud_detector.parquet user_id event_timestamp amount count_1h amount_sum_1h amount_vs_1h_avg --min count_1h=2"
step "Lineage: which data trained which model" "featurestore training-sets -r $REPO --model fraud_detector"
step "Train the example fraud model on it (logistic regression, numpy)" \
  "python -m examples.fraud_inference.train --training-set $REPO/data/training/fraud_detector.parquet --out $REPO/data/models/fraud_detector.json"
step "Online lookup for fraud_detector from the command line (one Redis round trip; the request's amount feeds the on-demand amount_vs_1h_avg, null until the stream consumer has written user 42's windows)" \
  "featurestore get-online -r $REPO --model fraud_detector -e user_id=42 -e merchant_id=m_00042 -e amount=120.5"

# The feature server: start it, ask it over HTTP with a model's key, stop it.
step "An API key for fraud_detector (printed once; the registry keeps a salted hash)" \
  "KEY=\$(featurestore credentials create -r $REPO --model fraud_detector --description demo) && echo \"\${KEY:0:21}...\""
PROMO_KEY=$(featurestore credentials create -r $REPO --model promo_ranker --description demo)
PORT=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
featurestore serve -r $REPO --port "$PORT" --workers 2 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "localhost:$PORT/healthz" >/dev/null && break; sleep 0.2; done
step "The same lookup over HTTP (featurestore serve, 2 workers; the key names the model)" \
  "curl -s localhost:$PORT/v1/features -H \"Authorization: Bearer \$KEY\" -d '{\"entities\": [{\"user_id\": 42, \"merchant_id\": \"m_00042\", \"amount\": 120.5}]}' > /tmp/featurestore-demo.json && python scripts/show_response.py /tmp/featurestore-demo.json"
step "A bad request gets a clear 4xx" \
  "curl -s localhost:$PORT/v1/features -H \"Authorization: Bearer \$KEY\" -d '{\"entities\": [{\"user_id\": \"42\"}]}'; echo"
step "A lookup without the request's amount: 422, naming the field" \
  "curl -s localhost:$PORT/v1/features -H \"Authorization: Bearer \$KEY\" -d '{\"entities\": [{\"user_id\": 42, \"merchant_id\": \"m_00042\"}]}'; echo"
step "No key: 401" \
  "curl -s localhost:$PORT/v1/features -d '{\"model\": \"fraud_detector\", \"entities\": [{\"user_id\": 42}]}'; echo"
step "promo_ranker (a marketing model) asks for an e-mail: refused by policy, and audited" \
  "curl -s localhost:$PORT/v1/features -H \"X-API-Key: \$PROMO_KEY\" -d '{\"features\": [\"user_profile:email\"], \"entities\": [{\"user_id\": 42}]}'; echo"
step "Readiness, and lookups counted per model and feature" \
  "curl -s localhost:$PORT/readyz; echo; curl -s localhost:$PORT/metrics | grep -E '^featurestore_(lookups|request_errors|feature_lookups)_total' | sed -n 1,6p"
step "Revoke the keys: the server refuses them within a second" \
  "featurestore credentials revoke -r $REPO \"\$KEY\" && featurestore credentials revoke -r $REPO \"\$PROMO_KEY\" && sleep 1.5 && curl -s localhost:$PORT/v1/features -H \"Authorization: Bearer \$KEY\" -d '{\"entities\": [{\"user_id\": 42}]}'; echo"
kill $SERVER; wait $SERVER 2>/dev/null || true
step "The audit log (a hash chain): keys, the denial, builds, applies; newest first" \
  "featurestore audit -r $REPO --limit 6"
step "Nobody edited it" "featurestore audit verify -r $REPO"

# Streaming: live events through the Kafka consumer, scored as they arrive; then the
# world shifts and the drift monitor says so.
featurestore stream create-topic user_txn_stats -r $REPO --partitions 4 >/dev/null
featurestore stream -r $REPO --flush-seconds 0.5 > "$REPO/.featurestore/stream-demo.log" 2>&1 &
CONSUMER=$!
INFER_KEY=$(featurestore credentials create -r $REPO --model fraud_detector --description "fraud inference service" 2>/dev/null)
INFER_PORT=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
FEATURESTORE_REPO=$REPO FEATURESTORE_API_KEY=$INFER_KEY FRAUD_MODEL=$REPO/data/models/fraud_detector.json \
  python -m uvicorn examples.fraud_inference.app:app_from_env --factory --port "$INFER_PORT" --log-level warning \
  > "$REPO/.featurestore/inference-demo.log" 2>&1 &
INFERENCE=$!
trap 'kill $CONSUMER $INFERENCE 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "localhost:$INFER_PORT/healthz" >/dev/null && break; sleep 0.2; done
caught_up() {
  for _ in $(seq 150); do
    featurestore stream status -r $REPO --json | python -c \
      "import json,sys; d=json.load(sys.stdin)[0]; sys.exit(not (d['consumers'] and d['total_lag'] == 0))" \
      && return 0
    sleep 0.2
  done
  echo "the consumer did not catch up; its log:"; cat "$REPO/.featurestore/stream-demo.log"; return 1
}
TRAFFIC="python -m examples.fraud_inference.traffic --url http://127.0.0.1:$INFER_PORT --repo $REPO"
step "Two hours of card transactions at the usual rate go to Kafka; the inference service (examples/fraud_inference, running) scores the last hour's with fraud_detector's features" \
  "$TRAFFIC live --count 2800 --spread-minutes 120 --chunks 140 --score-last-minutes 60 --seed 1"
step "The drift monitor compares the sampled served features with the training set's profile (featurestore drift monitor runs this every interval)" \
  "featurestore drift check -r $REPO || true"
step "A burst of live card transactions to Kafka (1% of them bad)" \
  "featurestore generate-data -r $REPO --kafka-events 3000 --kafka-only"
caught_up
STREAMED="-f user_txn_stats:count_10m -f user_txn_stats:amount_sum_10m -f user_txn_stats:count_1d -e user_id=2"
step "The consumer (featurestore stream, running) has written user 2's windows online" \
  "featurestore get-online -r $REPO $STREAMED"
step "Another burst" "featurestore generate-data -r $REPO --kafka-events 3000 --kafka-only --seed 8"
caught_up
step "User 2's streamed features changed, within a poll of arriving" "featurestore get-online -r $REPO $STREAMED"
ON_DEMAND="featurestore get-online -r $REPO --model fraud_detector -e user_id=2 -e merchant_id=m_00042"
step "fraud_detector for user 2 with two amounts: amount_vs_1h_avg is computed at each lookup from the request's amount and the streamed 1-hour window" \
  "for a in 50 500; do $ON_DEMAND -e amount=\$a | grep -E '^user_id|count_1h |amount_sum_1h |amount_vs_1h_avg'; done"
step "Consumer status: lag per partition, events/s, freshness, dead letters" \
  "featurestore stream status -r $REPO"
step "Bad events went to the dead-letter topic with their reason" "featurestore stream dlq -r $REPO --limit 3"
step "The world shifts: transactions ten times larger than usual, scored as they arrive" \
  "$TRAFFIC live --count 1000 --amount-scale 10 --chunks 10 --seed 2"
step "The monitor sees it (exit code 3 means drift)" "featurestore drift check -r $REPO || true"
step "Every lookup now carries the status: the inference service switches to its declared fallback rule" \
  "$TRAFFIC live --count 20 --amount-scale 10 --seed 3"
step "It says so in its metrics, and the drift history is kept" \
  "curl -s localhost:$INFER_PORT/metrics | grep -E '^fraud_inference_(predictions_total|drift_status)' ; featurestore drift history fraud_detector -r $REPO --limit 3"
kill $INFERENCE; wait $INFERENCE 2>/dev/null || true
step "Stop the consumer: SIGTERM lands the current batch offline and commits" \
  "kill -TERM $CONSUMER; wait $CONSUMER; tail -2 $REPO/.featurestore/stream-demo.log"
step "Lineage of fraud_detector: what it serves and was trained on, where each came from" \
  "featurestore lineage model fraud_detector -r $REPO"

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

# The web UI: read-only, behind an operator's key, left running until `dev down`.
UI_PORT=8888  # Feast's UI port; another free one if something else holds it
python -c 'import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(("127.0.0.1", 8888)) != 0)' \
  && UI_PORT=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
OPERATOR_KEY=$(featurestore credentials create -r $REPO --operator --description "demo: the web UI")
step "The web UI: the catalog, views, models and their policies, drift, lineage, runs, training sets, the audit log" \
  "featurestore ui -r $REPO --port $UI_PORT --detach"

step "Local services" "featurestore dev status -r $REPO"
if [[ "${FEATURESTORE_REDIS_CLUSTER:-}" == "true" ]]; then
  step "The online keys, spread over the cluster's primaries" \
    "for p in 6379 6380 6381; do echo \"127.0.0.1:\$p: \$(redis-cli -p \$p dbsize) keys\"; done"
fi
printf '\nDone. The web UI: \033[1mhttp://127.0.0.1:%s/ui/\033[0m (start with fraud_detector)\n' "$UI_PORT"
printf 'Log in with this operator key (shown once; the registry keeps only its hash):\n  %s\n' "$OPERATOR_KEY"
printf 'Stop the services and the UI with: .venv/bin/featurestore dev down -r %s\n' "$REPO"
