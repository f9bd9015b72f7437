#!/usr/bin/env bash
# Checks the OpenTofu code under terraform/:
#   1. `tofu fmt -check` over everything (this also parses every file);
#   2. for each root and module whose providers are built (see PROVIDERS in
#      e2e/scripts/build-tofu.sh): `tofu init -backend=false` from a local filesystem
#      mirror (the registry is never contacted), `tofu validate`, and `tofu test` where the
#      folder has tests/.
# Folders needing a provider that is not built (google and aws unless
# TERRAFORM_CHECK_ALL=1) are only formatted, parsed and loaded (`tofu get` and
# `tofu providers`); the script says which.
# Fails on the first problem. Works on a copy, so no .terraform/ or lock files appear in
# the clone.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"

# Folder, then the providers it needs (registry source addresses).
DIRS=(
  "modules/fedsky-member       hashicorp/kubernetes"
  "modules/openstack           terraform-provider-openstack/openstack hashicorp/kubernetes"
  "modules/gcp-gke             hashicorp/google hashicorp/kubernetes"
  "modules/aws-eks             hashicorp/aws hashicorp/kubernetes"
  "examples/three-hospitals    hashicorp/google terraform-provider-openstack/openstack hashicorp/kubernetes hashicorp/local"
)

step() { printf '==> %s\n' "$*" >&2; }

tofu="$("$repo/e2e/scripts/build-tofu.sh")/tofu"
# TERRAFORM_CHECK_ALL=1 also builds the google and aws providers (slow, see the README)
# so that every folder is validated.
mirror="$(TOFU_LARGE_PROVIDERS="${TERRAFORM_CHECK_ALL:-0}" "$repo/e2e/scripts/build-tofu.sh" providers)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Only the mirror: a provider missing from it fails `tofu init` instead of a download.
cat >"$work/tofu.rc" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.opentofu.org/*/*"]
  }
}
RC
export TF_CLI_CONFIG_FILE="$work/tofu.rc" TF_IN_AUTOMATION=1 TF_INPUT=0
export TF_PLUGIN_CACHE_DIR="" CHECKPOINT_DISABLE=1

step "tofu fmt -check -recursive terraform/"
"$tofu" fmt -check -recursive -diff -no-color "$here"

# Module sources are relative (../fedsky-member), so copy the whole tree, and the case
# study the example's test compares against.
mkdir -p "$work/terraform" "$work/examples"
(cd "$here" && tar --exclude=.terraform --exclude='*.tfstate*' --exclude=.terraform.lock.hcl \
  --exclude=generated -cf - .) | (cd "$work/terraform" && tar -xf -)
cp -r "$repo/examples/covid-xray" "$work/examples/"

have_provider() { # source
  local d="$mirror/registry.opentofu.org/$1"
  [ -d "$d" ] && [ -n "$(ls -A "$d")" ]
}

parse_only=()
for line in "${DIRS[@]}"; do
  read -r dir providers <<<"$line"
  missing=()
  for p in $providers; do have_provider "$p" || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    # Without the provider's schema validate cannot run; loading the configuration still
    # checks the module tree, the language-level structure and provider requirements.
    step "tofu get + tofu providers terraform/$dir (provider not built: ${missing[*]})"
    "$tofu" -chdir="$work/terraform/$dir" get -no-color >/dev/null
    "$tofu" -chdir="$work/terraform/$dir" providers -no-color >"$work/providers.log" 2>&1 ||
      { cat "$work/providers.log" >&2; exit 1; }
    parse_only+=("$dir (provider not built: ${missing[*]})")
    continue
  fi
  step "tofu validate terraform/$dir"
  "$tofu" -chdir="$work/terraform/$dir" init -backend=false -no-color >"$work/init.log" 2>&1 ||
    { cat "$work/init.log" >&2; exit 1; }
  "$tofu" -chdir="$work/terraform/$dir" validate -no-color
  if [ -d "$work/terraform/$dir/tests" ]; then
    step "tofu test terraform/$dir"
    "$tofu" -chdir="$work/terraform/$dir" test -no-color
  fi
done

for p in ${parse_only[@]+"${parse_only[@]}"}; do
  step "not validated (formatted, parsed and loaded only): terraform/$p"
done
step "terraform checks passed"
