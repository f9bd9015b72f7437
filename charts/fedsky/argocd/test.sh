#!/usr/bin/env bash
# Checks the Argo CD health scripts in health/ against the fixtures in testdata/<Kind>/
# (with Debian's lua5.4 and lua-cjson: e2e/scripts/lua-packages.sh) and that
# argocd-cm-patch.yaml holds the scripts as they are. `test.sh --update` rewrites the patch.
set -euo pipefail
cd "$(dirname "$0")"
export LC_ALL=C # the patch lists the scripts in glob order, the same on every machine

render() {
  printf '%s\n' "# Generated from health/*.lua by test.sh --update: edit the scripts, not this file." \
    "# Argo CD's argocd-cm additions for fedsky's kinds; see README.md." \
    "apiVersion: v1" "kind: ConfigMap" "metadata:" "  name: argocd-cm" "  namespace: argocd" "data:"
  for script in health/*.lua; do
    printf '  resource.customizations.health.%s: |\n' "$(basename "$script" .lua)"
    sed -e 's/^\(.\)/    \1/' "$script"
  done
}

if [ "${1:-}" = --update ]; then
  render >argocd-cm-patch.yaml
  exit 0
fi

passed=0 failed=0
for script in health/*.lua; do
  kind=$(basename "$script" .lua)
  kind=${kind#*_}
  fixtures=(testdata/"$kind"/*.json)
  [ -e "${fixtures[0]}" ] || { echo "FAIL $script: no fixtures in testdata/$kind/"; failed=$((failed + 1)); continue; }
  out=$(lua5.4 check.lua "$script" "${fixtures[@]}" 2>&1) || true
  last=$(printf '%s\n' "$out" | tail -n 1)
  if [[ $last =~ ^([0-9]+)\ ([0-9]+)$ ]]; then
    printf '%s\n' "$out" | sed '$d'
    passed=$((passed + BASH_REMATCH[1])) failed=$((failed + BASH_REMATCH[2]))
  else
    printf 'FAIL %s:\n%s\n' "$script" "$out"
    failed=$((failed + 1))
  fi
done
if ! diff -u argocd-cm-patch.yaml <(render); then
  echo "FAIL argocd-cm-patch.yaml is stale: run charts/fedsky/argocd/test.sh --update"
  failed=$((failed + 1))
fi
echo "argocd-health: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
