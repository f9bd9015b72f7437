#!/usr/bin/env bash
# A local federated run with real processes: one aggregator (plaintext gRPC on
# loopback) and three participants on non-IID synthetic chest X-rays. The
# participants share this machine, so each trains with THREADS=1 CPU thread.
#
#   . participant/scripts/env.sh
#   cargo build -p fedsky-aggregator -p fedsky-participant --bins
#   BIN=target/debug participant/scripts/quickstart.sh
set -euo pipefail
BIN="${BIN:-target/debug}"
WORK="${WORK:-$(mktemp -d)}"
ROUNDS="${ROUNDS:-5}"
SIZE="${SIZE:-32}"
GRPC="${GRPC:-127.0.0.1:50551}"
HTTP="${HTTP:-127.0.0.1:8551}"
CLASSES='Covid,Normal,Viral Pneumonia'
echo "working in $WORK"

for i in 0 1 2; do
  "$BIN/fedsky-participant" synth --out "$WORK/site-$i" --size "$SIZE" --train 90 \
    --test-per-class 10 --dominant-class "$i" --share 0.6 --seed "$((100 + i))"
done
"$BIN/fedsky-participant" init-model --arch small-cnn --image-size "$SIZE" --num-classes 3 \
  --init-seed 42 --out "$WORK/initial.safetensors"
cat > "$WORK/job.yaml" <<YAML
name: quickstart
seed: 5
rounds: {total: $ROUNDS, minPerRound: 3, maxPerRound: 3, roundTimeoutSeconds: 120}
strategy: {kind: FedAvg}
training: {localEpochs: 3, batchSize: 16, learningRate: 0.02, optimizer: sgd}
YAML
FEDSKY_JOB_TOKEN=quickstart-token "$BIN/fedsky-aggregator" --job "$WORK/job.yaml" \
  --grpc-listen "$GRPC" --http-listen "$HTTP" --insecure-plaintext \
  --initial-model "$WORK/initial.safetensors" --store-dir "$WORK/store" \
  > "$WORK/aggregator.log" 2>&1 &
AGG=$!
trap 'kill "$AGG" 2>/dev/null || true' EXIT

pids=()
for i in 0 1 2; do
  FEDSKY_JOB_TOKEN=quickstart-token "$BIN/fedsky-participant" run \
    --aggregator "http://$GRPC" --insecure-plaintext --participant-id "site-$i" \
    --data "$WORK/site-$i" --image-size "$SIZE" --classes "$CLASSES" \
    --device "${DEVICE:-auto}" --threads "${THREADS:-1}" --state-dir "$WORK/state-$i" --give-up-after-secs 60 \
    > "$WORK/site-$i.log" 2>&1 &
  pids+=("$!")
done
for p in "${pids[@]}"; do wait "$p"; done
tail -n 1 "$WORK"/site-*.log
# Accuracy of every global version, averaged over the sites' test splits.
if command -v curl > /dev/null; then
  # --insecure-plaintext still needs the job token on the model manager.
  curl -fsS -H "Authorization: Bearer quickstart-token" "http://$HTTP/v1/versions" | python3 -c '
import json, sys
for v in json.load(sys.stdin):
    m = v.get("metrics", {})
    print("version %d: eval_accuracy %s, train_loss %s" % (v["version"], m.get("eval_accuracy"), m.get("train_loss")))'
fi
