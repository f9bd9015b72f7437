#!/usr/bin/env bash
# Installs Debian's Lua 5.4 and lua-cjson, which the Argo CD health-check tests
# (charts/fedsky/argocd/test.sh) run on, where missing. Needs root when something is missing.
set -euo pipefail
pkgs=()
command -v lua5.4 >/dev/null || pkgs+=(lua5.4)
lua5.4 -e 'require "cjson"' 2>/dev/null || pkgs+=(lua-cjson)
if ((${#pkgs[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
