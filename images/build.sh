#!/usr/bin/env bash
# Builds the fedsky-operator, fedsky-aggregator and fedsky-participant images (`make images`).
#
# No base image can be pulled, and none is needed: each image is FROM scratch with its
# release binary, exactly the shared libraries `ldd` says it loads (the participant's come
# from the torch 2.11 wheel in the venv), a passwd entry for uid 65532 and the CA bundle.
# Images are built with buildah (Debian's package), timestamped with the commit's time so
# that the same commit gives the same layers, tagged `<version>` and `<version>-<revision>`,
# and their digests and sizes printed.
#
# Environment:
#   IMAGE_REPO         registry/prefix (default ghcr.io/fedsky)
#   IMAGES             which images (default "operator aggregator participant")
#   PARTICIPANT_CUDA   1: the participant links libtorch_cuda and carries the CUDA
#                      libraries (tag suffix -cuda); default 0, CPU libraries only
#   PYTHON             the venv's python with torch==2.11.0 (default .venv/bin/python)
#   CARGO_TARGET_DIR   cargo's build directory
#   IMAGE_PROFILE      release (default) or debug: the debug build the tests already made,
#                      its debug info stripped; tagged <version>-debug so that it is never
#                      taken for a release
#   IMAGE_ARCHIVES     a directory: also write each image there as fedsky-<name>.tar
#                      (oci-archive) with its reference in fedsky-<name>.ref, for the test
#                      nodes' containerd (`make test-images`)
#
# `pause` (not in the default IMAGES) is the pod sandbox image of the test nodes: a static
# build of images/pause.c, since no registry.k8s.io/pause can be pulled here.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE_REPO=${IMAGE_REPO:-ghcr.io/fedsky}
IMAGES=${IMAGES:-operator aggregator participant}
PARTICIPANT_CUDA=${PARTICIPANT_CUDA:-0}
PYTHON=${PYTHON:-$PWD/.venv/bin/python}
SOURCE=https://github.com/fedsky/fedsky
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
IMAGE_PROFILE=${IMAGE_PROFILE:-release}
IMAGE_ARCHIVES=${IMAGE_ARCHIVES:-}
case $IMAGE_PROFILE in
  release) cargo_profile=(--release); profile_dir=release; profile_suffix= ;;
  debug) cargo_profile=(); profile_dir=debug; profile_suffix=-debug ;;
  *) echo "IMAGE_PROFILE must be release or debug, not $IMAGE_PROFILE" >&2; exit 1 ;;
esac

command -v buildah >/dev/null || {
  echo "buildah is missing: install Debian's buildah (and podman to run the images)" >&2
  exit 1
}

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
revision=$(git rev-parse --short=12 HEAD)
git diff --quiet HEAD -- . 2>/dev/null || revision="$revision-dirty"
epoch=$(git log -1 --format=%ct)
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

torch_lib() {
  "$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'
}

# Copies `bin` and every library it loads into `root`: the binary to /usr/local/bin, the
# program interpreter to its own path, libraries to /usr/local/lib/fedsky.
assemble() {
  local bin=$1 root=$2 libpath=${3:-}
  install -D -m 0755 "$bin" "$root/usr/local/bin/$(basename "$bin")"
  mkdir -p "$root/usr/local/lib/fedsky"
  local interp
  interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
  if [ -n "$interp" ]; then # a static binary (pause) loads nothing
    install -D -m 0755 "$(readlink -f "$interp")" "$root$interp"
    # ldd resolves the whole closure; "not found" means the image would not start.
    local out
    out=$(LD_LIBRARY_PATH="$libpath" ldd "$bin")
    if grep -q 'not found' <<<"$out"; then
      echo "$bin: libraries not found:" >&2
      grep 'not found' <<<"$out" >&2
      exit 1
    fi
    awk '/=> \// { print $1, $3 }' <<<"$out" | while read -r soname path; do
      install -m 0644 "$(readlink -f "$path")" "$root/usr/local/lib/fedsky/$soname"
    done
  fi
  # Only the owner-less minimum: a passwd/group entry so tools show a name for uid
  # 65532, the CA bundle for TLS to clouds and registries, and an empty /tmp for a mount.
  mkdir -p "$root/etc/ssl/certs" "$root/tmp"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
}

build_binaries() {
  local rust=() want
  for want in $IMAGES; do
    case $want in
      operator) rust+=(-p fedsky-operator --bin fedsky-operator) ;;
      aggregator) rust+=(-p fedsky-aggregator --bin fedsky-aggregator) ;;
      participant | pause) ;;
      *) echo "unknown image $want (operator, aggregator, participant, pause)" >&2; exit 1 ;;
    esac
  done
  if ((${#rust[@]})); then
    echo "==> cargo build ${cargo_profile[*]} ${rust[*]}"
    cargo build "${cargo_profile[@]}" --locked "${rust[@]}"
  fi
  if [[ " $IMAGES " == *" participant "* ]]; then
    local lib
    lib=$(torch_lib)
    echo "==> cargo build ${cargo_profile[*]} -p fedsky-participant (CUDA: $PARTICIPANT_CUDA)"
    PATH="$(dirname "$PYTHON"):$PATH" LIBTORCH_USE_PYTORCH=1 FEDSKY_TORCH_LIB="$lib" \
      FEDSKY_PARTICIPANT_CUDA="$PARTICIPANT_CUDA" \
      cargo build "${cargo_profile[@]}" --locked -p fedsky-participant --bin fedsky-participant
  fi
}

build_binaries
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '\n%-22s %-40s %-73s %9s %8s\n' IMAGE TAG DIGEST SIZE SECONDS
for name in $IMAGES; do
  start=$(date +%s)
  ctx="$work/$name"
  libpath=
  tag_suffix=
  if [ "$name" = participant ]; then
    libpath=$(torch_lib)
    if [ "$PARTICIPANT_CUDA" = 1 ]; then tag_suffix=-cuda; fi
  fi
  if [ "$name" = pause ]; then
    mkdir -p "$ctx"
    cc -static -Os -o "$ctx/pause" images/pause.c
    bin="$ctx/pause"
  else
    bin="$TARGET/$profile_dir/fedsky-$name"
    if [ "$IMAGE_PROFILE" = debug ]; then
      # Line tables make the debug binaries several times larger than the code.
      strip --strip-debug -o "$ctx.bin" "$bin"
      mkdir -p "$ctx" && mv "$ctx.bin" "$ctx/fedsky-$name" && bin="$ctx/fedsky-$name"
    fi
  fi
  assemble "$bin" "$ctx/rootfs" "$libpath"
  if [ "$name" = participant ] && [ "$PARTICIPANT_CUDA" = 1 ]; then
    # Loaded with dlopen, so ldd cannot see them: cuDNN's engine libraries and NVRTC's
    # builtins. The driver (libcuda.so) comes from the node.
    nvidia="$(dirname "$libpath")/../nvidia"
    for f in "$nvidia"/cudnn/lib/libcudnn*.so* "$nvidia"/cu13/lib/libnvrtc-builtins*.so*; do
      [ -e "$f" ] && install -m 0644 "$(readlink -f "$f")" "$ctx/rootfs/usr/local/lib/fedsky/$(basename "$f")"
    done
  fi
  repo="$IMAGE_REPO/fedsky-$name"
  tag="$version$profile_suffix$tag_suffix"
  buildah bud --quiet --layers=false --format oci --timestamp "$epoch" \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" \
    --build-arg SOURCE="$SOURCE" --build-arg CREATED="$created" \
    -f "images/$name.Containerfile" -t "$repo:$tag" -t "$repo:$version-$revision$profile_suffix$tag_suffix" \
    "$ctx" >/dev/null
  digest=$(buildah inspect --type image --format '{{.FromImageDigest}}' "$repo:$tag")
  size=$(du -sb "$ctx/rootfs" | cut -f1)
  if [ -n "$IMAGE_ARCHIVES" ]; then
    mkdir -p "$IMAGE_ARCHIVES"
    rm -f "$IMAGE_ARCHIVES/fedsky-$name.tar"
    skopeo copy --quiet "containers-storage:$repo:$tag" \
      "oci-archive:$IMAGE_ARCHIVES/fedsky-$name.tar:$repo:$tag"
    echo "$repo:$tag" >"$IMAGE_ARCHIVES/fedsky-$name.ref"
  fi
  printf '%-22s %-40s %-73s %8sM %8s\n' "fedsky-$name" "$tag, $version-$revision$profile_suffix$tag_suffix" \
    "$digest" "$((size / 1024 / 1024))" "$(($(date +%s) - start))"
done
