#!/usr/bin/env bash
# Runs each image built by `make images` as a restricted pod would: uid 65532, read-only
# root file system, no network, every capability dropped; each must print its version, and
# the participant must write an initial model with libtorch (what the aggregator's init
# container does), which proves its libraries are complete.
# podman needs runc here (crun fails on hybrid cgroups) and explicit rlimits.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE_REPO=${IMAGE_REPO:-ghcr.io/fedsky}
IMAGES=${IMAGES:-operator aggregator participant}
TAG=${TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
run() {
  podman run --rm --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    --user 65532:65532 --read-only --network none --cap-drop all \
    --security-opt no-new-privileges "$@"
}
for name in $IMAGES; do
  image="$IMAGE_REPO/fedsky-$name:$TAG"
  out=$(run "$image" --version)
  echo "$image: $out"
  [[ "$out" == *"$TAG"* ]] || { echo "$image printed no version $TAG" >&2; exit 1; }
  user=$(podman image inspect --format '{{.Config.User}}' "$image")
  [ "$user" = "65532:65532" ] || { echo "$image runs as '$user', not 65532" >&2; exit 1; }
done
if [[ " $IMAGES " == *" participant "* ]]; then
  run --tmpfs /model:rw,mode=1777 "$IMAGE_REPO/fedsky-participant:$TAG" \
    init-model --out /model/initial.safetensors
fi
