#!/usr/bin/env bash
# Builds the real control-plane binaries used by the e2e harness from the Go module
# proxy, once per version, into a cache outside the clone:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, and for real nodes
#   kubelet and kube-proxy (k8s.io/kubernetes),
#   etcd (go.etcd.io/etcd/server/v3), kwok (sigs.k8s.io/kwok), helm (helm.sh/helm/v3).
# Prints the bin directory on stdout. Nothing of their Go code is kept in this repo:
# the go.mod below is generated into the cache.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
CACHE="${FEDSKY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fedsky}"
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
BIN="$CACHE/bin/$KEY"
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
WANT=("${K8S_CMDS[@]}" etcd kwok helm kwok-stages.yaml)

have_all() { for b in "${WANT[@]}"; do [ -s "$BIN/$b" ] || return 1; done; }
if have_all; then echo "$BIN"; exit 0; fi

log() { echo "[build-control-plane] $*" >&2; }
mkdir -p "$BIN" "$CACHE/gomod"
export GOFLAGS="-buildvcs=false -trimpath"
export CGO_ENABLED=0
LDFLAGS="-s -w"

# k8s.io/kubernetes only builds with its staging modules pinned to the published
# k8s.io/* versions of the same release (the repo's own go.mod points at ./staging).
build_k8s() {
  local mod="$CACHE/gomod/k8s-$K8S_VERSION" minor="v0.${K8S_VERSION#v1.}"
  mkdir -p "$mod"
  if [ ! -f "$mod/go.sum" ]; then
    log "resolving k8s.io/kubernetes@$K8S_VERSION"
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
    {
      echo "module fedsky.dev/e2e-control-plane"
      echo "go $(awk '$1=="go"{print $2; exit}' "$gomod")"
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo "replace ("
      grep -E '=> \./staging/src/' "$gomod" | awk -v v="$minor" '{print "\t" $1 " => " $1 " " v}'
      echo ")"
    } > "$mod/go.mod"
    (cd "$mod" && go mod tidy -e >/dev/null 2>&1 || true)
  fi
  # Each command's dependencies enter go.sum with `go get`; a cache made before a command
  # was added gets them here (a no-op when they are there).
  local c pkgs=()
  for c in "${K8S_CMDS[@]}"; do
    [ -x "$BIN/$c" ] || pkgs+=("k8s.io/kubernetes/cmd/$c@$K8S_VERSION")
  done
  if ((${#pkgs[@]})); then
    (cd "$mod" && go get "${pkgs[@]}" >&2)
  fi
  for c in "${K8S_CMDS[@]}"; do
    [ -x "$BIN/$c" ] && continue
    log "building $c $K8S_VERSION"
    (cd "$mod" && go build -ldflags "$LDFLAGS -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" \
      -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c") && mv "$BIN/$c.tmp" "$BIN/$c"
  done
}

# Each tool is built inside a generated module that requires it, because `go install
# pkg@version` refuses modules whose go.mod has replace lines (etcd's and kwok's do).
build_in_module() { # name module version package
  local name="$1" module="$2" version="$3" pkg="$4" mod="$CACHE/gomod/$1-$3"
  [ -x "$BIN/$name" ] && return 0
  log "building $name from $module@$version"
  mkdir -p "$mod"
  if [ ! -f "$mod/go.mod" ]; then
    (cd "$mod" && go mod init "fedsky.dev/e2e-$name" >/dev/null 2>&1)
  fi
  (cd "$mod" && go get "$module@$version" >&2 && go get "$pkg@$version" >&2 2>/dev/null || true)
  (cd "$mod" && go build -ldflags "$LDFLAGS" -o "$BIN/$name.tmp" "$pkg") && mv "$BIN/$name.tmp" "$BIN/$name"
}

# kwok runs nothing without Stage definitions; take kwok's own "fast" node and pod stages
# plus node heartbeats (so kube-controller-manager keeps nodes Ready) from its module.
kwok_stages() {
  [ -f "$BIN/kwok-stages.yaml" ] && return 0
  local dir stage
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
  for stage in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
               pod/fast/pod-ready.yaml pod/fast/pod-delete.yaml; do
    echo "---"; grep -v '^---$' "$dir/kustomize/stage/$stage"
  done > "$BIN/kwok-stages.yaml.tmp"
  mv "$BIN/kwok-stages.yaml.tmp" "$BIN/kwok-stages.yaml"
}

build_k8s
build_in_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
build_in_module kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
build_in_module helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
(cd "$CACHE/gomod/kwok-$KWOK_VERSION" && kwok_stages)
have_all || { log "missing after build: see the errors above"; exit 1; }
echo "$BIN"
