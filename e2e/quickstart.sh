#!/usr/bin/env bash
# fedsky on one machine: installs what is missing (from the package registries), builds,
# starts a hub and the five member clusters of examples/covid-xray/ (real control planes,
# simulated nodes), runs the operator with the process runtime, applies the example with
# three hospitals' non-IID chest-X-ray-like data generated locally, and follows the job
# until it finishes. Ctrl-C (or the end) stops everything it started.
#
#   ./e2e/quickstart.sh                # process runtime (`make quickstart`)
#   ./e2e/quickstart.sh --real-nodes   # the same on real nodes (`make quickstart-cluster`)
#
# With --real-nodes (root only: nodes need their own network namespaces, cgroups and a
# bridge), every cluster gets real nodes (kubelet, containerd, runc, CNI, kube-proxy) that
# run fedsky's images, e2e/testbeds/covid-xray-nodes.yaml; the operator is installed by
# the chart and runs as a container on the hub; each hospital's data is written onto its
# cluster's volume by a Job of the participant image; the aggregator and participants are
# pods under `restricted` Pod Security.
#
# Settings (environment): QUICKSTART_DIR (working directory, default .quickstart),
# QUICKSTART_ROUNDS (override the example's rounds), QUICKSTART_IMAGES (training images
# per hospital, default 300), QUICKSTART_HOLD (1: keep running after the job until
# Ctrl-C, so its model manager stays up; default when run in a terminal), QUICKSTART_CHECK
# (1: fail unless accuracy rose over the rounds; the end-to-end tests set it). With
# --real-nodes: FEDSKY_IMAGE_ARCHIVES (images already built by `make test-images`; unset,
# they are built into the cache folder).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
case "${1:-}" in
  "") REAL_NODES=0 ;;
  --real-nodes) REAL_NODES=1 ;;
  *) echo "usage: $0 [--real-nodes]" >&2; exit 2 ;;
esac
if [ "$REAL_NODES" = 1 ]; then
  WORK=${QUICKSTART_DIR:-$ROOT/.quickstart-cluster}
else
  WORK=${QUICKSTART_DIR:-$ROOT/.quickstart}
fi
IMAGES=${QUICKSTART_IMAGES:-300}
if [ -t 0 ]; then HOLD=${QUICKSTART_HOLD:-1}; else HOLD=${QUICKSTART_HOLD:-0}; fi
export FEDSKY_CACHE="${FEDSKY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fedsky}"
step() { printf '\n==> %s\n' "$*"; }
die() { echo "quickstart: $*" >&2; exit 1; }

for tool in cargo go python3 curl; do
  command -v "$tool" >/dev/null || die "missing $tool: install it from your distribution's packages"
done
if [ "$REAL_NODES" = 1 ]; then
  [ "$(id -u)" = 0 ] || die "real nodes need root (network namespaces, cgroups, a bridge); \
\`make quickstart\` runs the same example without them"
  step "Debian packages for real nodes (containerd, runc, CNI plugins, buildah)"
  ./e2e/scripts/node-packages.sh
fi
mkdir -p "$WORK"

step "Python venv with torch 2.11 (libtorch for the participants)"
venv=$(./e2e/scripts/venv.sh)
[ -e .venv ] || ln -s "$venv" .venv
export PATH="$venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1
torch_lib=$(python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export FEDSKY_TORCH_LIB="$torch_lib" LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

step "control-plane binaries (built once from the Go module proxy)"
FEDSKY_BIN_DIR=$(./e2e/scripts/build-control-plane.sh)
export FEDSKY_BIN_DIR
kubectl() { "$FEDSKY_BIN_DIR/kubectl" "$@"; }

step "building fedsky (incremental after the first run)"
cargo build -q --locked -p fedsky-operator -p fedsky-aggregator -p fedsky-e2e --bins
cargo build -q --locked -p fedsky-participant --bins
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
if [ "$REAL_NODES" = 1 ] && [ -n "${FEDSKY_IMAGE_ARCHIVES:-}" ]; then
  step "fedsky's images from $FEDSKY_IMAGE_ARCHIVES"
elif [ "$REAL_NODES" = 1 ]; then
  # The debug build just made, as images (tag <version>-debug); shared with `make test`.
  step "fedsky's images (operator, aggregator, participant) from that build"
  export FEDSKY_IMAGE_ARCHIVES="$FEDSKY_CACHE/images"
  PYTHON="$venv/bin/python" IMAGE_PROFILE=debug IMAGE_ARCHIVES="$FEDSKY_IMAGE_ARCHIVES" \
    IMAGES="pause operator aggregator participant" ./images/build.sh > "$WORK/images.log" 2>&1 ||
    die "building the images failed; see $WORK/images.log"
fi

pids=()
cleanup() {
  trap - EXIT INT TERM
  step "stopping"
  # Real nodes go with the testbed, every container on them with it.
  if [ "$REAL_NODES" = 0 ] && [ -f "$WORK/hub.kubeconfig" ] && [ "${#pids[@]}" -gt 1 ]; then
    # The finalizer stops the job's processes; give it a moment.
    KUBECONFIG="$WORK/hub.kubeconfig" kubectl delete -f examples/covid-xray/federated-job.yaml \
      --ignore-not-found --wait --timeout=30s >/dev/null 2>&1 || true
  fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  # Any process the operator could not stop (its process groups; process runtime only).
  if [ -d "$WORK/state" ]; then
    find "$WORK/state" -name pid -path '*/run/*' | while read -r f; do
      kill -TERM -- "-$(cat "$f")" 2>/dev/null || true
    done
  fi
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -f "$WORK/hub.kubeconfig"
if [ "$REAL_NODES" = 1 ]; then
  step "starting a hub and 5 member clusters with real nodes, writing each hospital's data ($IMAGES training images each) (e2e/testbeds/covid-xray-nodes.yaml)"
  "$BIN/fedsky-testbed" --config e2e/testbeds/covid-xray-nodes.yaml --train-images "$IMAGES" \
    --member-kubeconfigs "$WORK/members" --kubeconfig-out "$WORK/hub.kubeconfig" \
    > "$WORK/testbed.log" 2>&1 &
else
  step "starting a hub and 5 member clusters (e2e/testbeds/covid-xray.yaml)"
  "$BIN/fedsky-testbed" --config e2e/testbeds/covid-xray.yaml \
    --kubeconfig-out "$WORK/hub.kubeconfig" > "$WORK/testbed.log" 2>&1 &
fi
pids+=("$!")
for _ in $(seq 1 600); do
  [ -f "$WORK/hub.kubeconfig" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || die "the testbed failed; see $WORK/testbed.log"
  sleep 1
done
[ -f "$WORK/hub.kubeconfig" ] || die "the testbed did not start in 10 minutes; see $WORK/testbed.log"
export KUBECONFIG="$WORK/hub.kubeconfig"

if [ "$REAL_NODES" = 1 ]; then
  step "fedsky's chart: the operator as a container on the hub (helm install)"
  tag=$(sed 's/.*://' "$FEDSKY_IMAGE_ARCHIVES/fedsky-operator.ref")
  "$FEDSKY_BIN_DIR/helm" install fedsky charts/fedsky --namespace fedsky-system --wait --timeout 5m \
    --set "replicaCount=1,modelApi.persistence.enabled=false,images.pullPolicy=Never,images.operator.tag=$tag,images.aggregator.tag=$tag,images.participant.tag=$tag" \
    > "$WORK/helm.log" 2>&1 || die "helm install failed; see $WORK/helm.log"
else
  step "generating three hospitals' non-IID data ($IMAGES training images each)"
  i=0
  for claim in chest-xray-eu chest-xray-asia chest-xray-us; do
    out="$WORK/data/$claim/covid19-radiography"
    if [ ! -f "$out/.images-$IMAGES" ]; then
      rm -rf "$out"
      "$BIN/fedsky-participant" synth --out "$out" --size 64 --train "$IMAGES" --test-per-class 20 \
        --dominant-class "$i" --share 0.6 --seed "$((100 + i))" > /dev/null
      touch "$out/.images-$IMAGES"
    fi
    i=$((i + 1))
  done

  step "operator with the process runtime"
  rm -rf "$WORK/state"
  "$BIN/fedsky-operator" --runtime process --no-leader-election --metrics-addr 127.0.0.1:0 \
    --process-state-dir "$WORK/state" --process-data-root "$WORK/data" \
    --aggregator-bin "$BIN/fedsky-aggregator" --participant-bin "$BIN/fedsky-participant" \
    > "$WORK/operator.log" 2>&1 &
  pids+=("$!")
fi

step "kubectl apply -f examples/covid-xray/"
# The testbed registered the MemberClusters already (without kubectl's last-applied
# annotation); kubectl warns about that once per cluster, which is noise here.
apply() { kubectl apply "$@" 2> >(grep -v 'last-applied-configuration' >&2); }
apply -f examples/covid-xray/namespace.yaml
if [ -n "${QUICKSTART_ROUNDS:-}" ]; then
  mkdir -p "$WORK/example"
  cp examples/covid-xray/*.yaml "$WORK/example/"
  sed -i "s/^    rounds: .*/    rounds: $QUICKSTART_ROUNDS/" "$WORK/example/federated-job.yaml"
  apply -f "$WORK/example/"
else
  apply -f examples/covid-xray/
fi

step "training (status from kubectl get federatedjob covid-xray -n covid-xray)"
# One line per change of phase or participants, and one per finished round (from the
# job's status history: the participants' evaluation of each new global model).
start=$(date +%s)
job() { kubectl get federatedjob covid-xray -n covid-xray -o "jsonpath=$1" 2>/dev/null || true; }
fields='{.status.phase}|{.status.roundProgress}|{.status.placement.summary}|{range .status.participants[*]}{.state}{" "}{end}|{range .status.conditions[?(@.status=="False")]}{.type}: {.message}{"; "}{end}'
# '|'-separated: a field the status lacks (the last version's evaluation may not be in
# yet) stays empty instead of shifting the others.
history='{range .status.history[*]}{.round}|{.participants}|{.loss}|{.accuracy}|{.durationSeconds}{"\n"}{end}'
printf '%6s  %-9s  %-8s  %-12s  %-8s  %-8s  %s\n' elapsed phase round participants loss accuracy "round time"
last="" shown=-1
while :; do
  IFS='|' read -r phase round placement parts waiting <<< "$(job "$fields")"
  running=$(grep -o 'Running\|Completed' <<< "$parts" | wc -l || true)
  now=$(( $(date +%s) - start ))
  state="${phase:-Pending} ${running} ${placement:-}"
  if [ "$state" != "$last" ]; then
    printf '%5ss  %-9s  %-8s  %-12s  %s\n' "$now" "${phase:-Pending}" "${round:--}" "$running" \
      "${placement:+aggregator placed on $placement}"
    last=$state
  fi
  while IFS='|' read -r r n loss acc secs; do
    [ -n "$r" ] && [ "$r" -gt "$shown" ] || continue
    rt=""; [ -n "$secs" ] && rt=$(printf '%.2fs' "$secs")
    [ "$r" = 0 ] && [ -z "$acc" ] && { shown=0; continue; }
    printf '%5ss  %-9s  %-8s  %-12s  %-8.6s  %-8.6s  %s\n' "$now" "" "$r/${round#*/}" \
      "$n" "${loss:--}" "${acc:--}" "$rt"
    shown=$r
  done <<< "$(job "$history")"
  case "$phase" in
    Succeeded) break ;;
    Failed) kubectl get federatedjob covid-xray -n covid-xray -o yaml | sed -n '/^status:/,$p'
            die "the job failed (logs in $WORK)" ;;
  esac
  if [ "$now" -gt "${QUICKSTART_TIMEOUT:-1800}" ]; then
    echo "waiting on: ${waiting:-}" >&2
    die "no result after ${QUICKSTART_TIMEOUT:-1800}s (logs in $WORK)"
  fi
  sleep 1
done

# With QUICKSTART_CHECK=1 (the end-to-end test in `make test`), the global model must have
# improved: the participants' accuracy on the last version above that on the first.
if [ "${QUICKSTART_CHECK:-0}" = 1 ]; then
  read -r first final <<< "$(job "$history" | awk -F'|' '$4!="" {a[n++]=$4} END {print a[0], a[n-1]}')"
  python3 -c "import sys; f, l = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if l > f else 1)" \
    "${first:-0}" "${final:-0}" || die "accuracy did not rise: ${first:-none} on the first version, ${final:-none} on the last"
  echo "accuracy rose from $first to $final"
fi

uri=$(kubectl get federatedjob covid-xray -n covid-xray -o 'jsonpath={.status.latestModel.uri}')
sha=$(kubectl get federatedjob covid-xray -n covid-xray -o 'jsonpath={.status.latestModel.sha256}')
# The model manager serves HTTPS with the job's own CA and admits the job's token (or a
# client certificate of that CA); both are in the hub, next to the operator. Its
# certificate names the aggregator's Service, whatever address status gives: curl dials
# that address under the Service's name.
uid=$(kubectl get federatedjob covid-xray -n covid-xray -o 'jsonpath={.metadata.uid}')
kubectl get secret -n fedsky-system "fedsky-job-$uid-ca" -o 'jsonpath={.data.ca\.crt}' | base64 -d > "$WORK/job-ca.crt"
token=$(kubectl get secret -n fedsky-system "fedsky-job-$uid-token" -o 'jsonpath={.data.token}' | base64 -d)
printf 'header = "Authorization: Bearer %s"\n' "$token" > "$WORK/model-download.curlrc"
chmod 600 "$WORK/model-download.curlrc"
tls_name=fedsky-agg-covid-xray-covid-xray.fedsky-aggregators.svc
hostport=${uri#https://}; hostport=${hostport%%/*}
path=/${uri#https://*/}
curl -fsS -K "$WORK/model-download.curlrc" --cacert "$WORK/job-ca.crt" \
  --connect-to "$tls_name:${hostport##*:}:$hostport" -o "$WORK/covid-xray.safetensors" \
  "https://$tls_name:${hostport##*:}$path"
got=$(sha256sum "$WORK/covid-xray.safetensors" | cut -d' ' -f1)
[ "$got" = "$sha" ] || die "downloaded model sha256 $got differs from status $sha"
step "done"
kubectl get federatedjob -n covid-xray
cat <<EOF

Final global model: $WORK/covid-xray.safetensors (sha256 $sha)
It is served by the aggregator's model manager while the job exists, over HTTPS with the
job's CA and token (see docs/operations.md, "The model manager"):
  curl -K $WORK/model-download.curlrc --cacert $WORK/job-ca.crt \
    --connect-to $tls_name:${hostport##*:}:$hostport -o covid-xray.safetensors \
    https://$tls_name:${hostport##*:}$path
  KUBECONFIG=$KUBECONFIG kubectl get federatedjob covid-xray -n covid-xray -o yaml
EOF
if [ "$REAL_NODES" = 1 ]; then
  cat <<EOF
The member clusters' pods (kubeconfigs in $WORK/members/):
  KUBECONFIG=$WORK/members/hospital-eu.kubeconfig kubectl get pods -A -o wide
Logs: KUBECONFIG=$KUBECONFIG kubectl logs -n fedsky-system deploy/fedsky, $WORK/testbed.log
EOF
else
  echo "Logs: $WORK/operator.log, $WORK/state/*/aggregator/run/log, $WORK/state/*/participants/*/run/log"
fi
if [ "$HOLD" = 1 ]; then
  echo "Everything keeps running; press Ctrl-C to stop it."
  while :; do sleep 3600; done
fi
