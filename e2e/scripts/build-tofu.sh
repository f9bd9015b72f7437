#!/usr/bin/env bash
# Builds OpenTofu, and on request the Terraform providers the modules in terraform/ use,
# from the Go module proxy, once per version, into a cache outside the clone.
#
#   build-tofu.sh            builds tofu; prints the directory holding it
#   build-tofu.sh providers  builds the providers (see PROVIDERS; TOFU_LARGE_PROVIDERS=1
#                            adds google and aws) into an unpacked filesystem mirror;
#                            prints the mirror directory
#
# Each build happens in a go.mod generated into the cache (nothing of their Go code is
# kept in this repo); binaries are written under a temporary name and renamed into place,
# so an interrupted build never leaves a half-written binary that looks complete.
set -euo pipefail

TOFU_VERSION="${TOFU_VERSION:-v1.10.10}"
CACHE="${FEDSKY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fedsky}"
# Keeps the Go builds from taking every core of a shared machine; raise it for speed.
export GOMAXPROCS="${GOMAXPROCS:-1}"
export GOFLAGS="-buildvcs=false -trimpath -p=${GO_BUILD_PARALLEL:-1}"
export CGO_ENABLED=0
LDFLAGS="-s -w"

# Providers: local name, Go module, module version on the proxy, main package, and the
# registry version the binary is installed as in the mirror. The proxy serves these
# providers only as pseudo-versions of their main branches (their release tags lack the
# /vN module suffix Go requires), so each is installed as the release its CHANGELOG.md
# names for that commit; the modules' version constraints accept those versions.
PROVIDERS=(
  "local      github.com/terraform-providers/terraform-provider-local v1.4.1-0.20260513075820-3561e410f9fe github.com/terraform-providers/terraform-provider-local hashicorp/local 2.9.0"
  "openstack  github.com/terraform-provider-openstack/terraform-provider-openstack/v3 v3.4.0 github.com/terraform-provider-openstack/terraform-provider-openstack/v3 terraform-provider-openstack/openstack 3.4.0"
  "kubernetes github.com/hashicorp/terraform-provider-kubernetes v1.13.4-0.20260821094251-3a33fb6cc605 github.com/hashicorp/terraform-provider-kubernetes hashicorp/kubernetes 3.2.1"
)
# Built only with TOFU_LARGE_PROVIDERS=1: each took longer than 15 minutes to build from
# a cold cache on one core here (see terraform/README.md), too long for every CI run.
LARGE_PROVIDERS=(
  "google     github.com/hashicorp/terraform-provider-google v1.20.1-0.20260828184646-f3721fb45fa3 github.com/hashicorp/terraform-provider-google hashicorp/google 8.0.0"
  "aws        github.com/hashicorp/terraform-provider-aws v1.60.1-0.20260602190131-5f2286d6d836 github.com/hashicorp/terraform-provider-aws hashicorp/aws 6.48.0"
)
if [ "${TOFU_LARGE_PROVIDERS:-0}" = 1 ]; then PROVIDERS+=("${LARGE_PROVIDERS[@]}"); fi

log() { echo "[build-tofu] $*" >&2; }
goos_arch() { echo "$(go env GOOS)_$(go env GOARCH)"; }

# OpenTofu's go.mod replaces hashicorp/hcl with OpenTofu's fork; `go install pkg@version`
# refuses modules with replace lines, so the build runs in a generated module that
# requires OpenTofu and repeats its replace lines.
build_tofu() {
  local bin="$CACHE/bin/tofu-$TOFU_VERSION" mod="$CACHE/gomod/tofu-$TOFU_VERSION"
  if [ -x "$bin/tofu" ]; then echo "$bin"; return 0; fi
  mkdir -p "$bin" "$mod"
  if [ ! -f "$mod/go.sum" ]; then
    log "resolving github.com/opentofu/opentofu@$TOFU_VERSION"
    local gomod
    gomod=$(go mod download -json "github.com/opentofu/opentofu@$TOFU_VERSION" |
      python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
    {
      echo "module fedsky.dev/e2e-tofu"
      echo "go $(awk '$1=="go"{print $2; exit}' "$gomod")"
      echo "require github.com/opentofu/opentofu $TOFU_VERSION"
      grep -E '^replace ' "$gomod" || true
    } >"$mod/go.mod.tmp"
    mv "$mod/go.mod.tmp" "$mod/go.mod"
    (cd "$mod" && go get "github.com/opentofu/opentofu/cmd/tofu@$TOFU_VERSION" >&2)
  fi
  log "building tofu $TOFU_VERSION"
  # version.dev=no: a release build, as OpenTofu's own release pipeline links it.
  (cd "$mod" && go build -ldflags "$LDFLAGS -X github.com/opentofu/opentofu/version.dev=no" \
    -o "$bin/tofu.tmp" github.com/opentofu/opentofu/cmd/tofu)
  mv "$bin/tofu.tmp" "$bin/tofu"
  echo "$bin"
}

# Layout of an unpacked filesystem mirror:
#   <mirror>/registry.opentofu.org/<namespace>/<type>/<version>/<os>_<arch>/terraform-provider-<type>
build_provider() { # name module module-version package source version mirror
  local name="$1" module="$2" modver="$3" pkg="$4" source="$5" version="$6" mirror="$7"
  local dir="$mirror/registry.opentofu.org/$source/$version/$(goos_arch)"
  local exe="$dir/terraform-provider-${source##*/}_v$version"
  [ -x "$exe" ] && return 0
  local mod="$CACHE/gomod/tofu-provider-$name-$modver"
  mkdir -p "$dir" "$mod"
  log "building provider $source $version from $module@$modver"
  if [ ! -f "$mod/go.sum" ]; then
    if [ ! -f "$mod/go.mod" ]; then
      (cd "$mod" && go mod init "fedsky.dev/e2e-tofu-provider-$name" >/dev/null 2>&1)
    fi
    (cd "$mod" && go get "$module@$modver" >&2)
  fi
  local started=$SECONDS
  (cd "$mod" && go build -ldflags "$LDFLAGS" -o "$exe.tmp" "$pkg")
  mv "$exe.tmp" "$exe"
  log "built $source in $((SECONDS - started))s (compile and link only)"
}

build_providers() {
  local key mirror line name module modver pkg source version
  # The mirror is keyed by the provider list, so changing a pin starts a new mirror and a
  # mirror holds exactly the providers listed (the check script relies on that).
  key=$(printf '%s\n' "${PROVIDERS[@]}" | sha256sum | cut -c1-12)
  mirror="$CACHE/bin/tofu-providers-$key"
  for line in "${PROVIDERS[@]}"; do
    read -r name module modver pkg source version <<<"$line"
    build_provider "$name" "$module" "$modver" "$pkg" "$source" "$version" "$mirror"
  done
  echo "$mirror"
}

case "${1:-tofu}" in
  tofu) build_tofu ;;
  providers) build_providers ;;
  *) echo "usage: $0 [tofu|providers]" >&2; exit 2 ;;
esac
