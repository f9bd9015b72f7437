#!/usr/bin/env bash
# Installs the Debian packages that real test nodes (containerd, runc, CNI plugins,
# iptables, conntrack, nsenter/unshare) and the images they run (buildah, skopeo) need,
# where a tool is missing. Needs root when something is missing.
set -euo pipefail
pkgs=()
for tool in containerd:containerd ctr:containerd runc:runc iptables:iptables \
  conntrack:conntrack buildah:buildah skopeo:skopeo nsenter:util-linux unshare:util-linux; do
  command -v "${tool%%:*}" >/dev/null || pkgs+=("${tool#*:}")
done
[ -x /usr/lib/cni/bridge ] || pkgs+=(containernetworking-plugins)
if ((${#pkgs[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${pkgs[@]}" | sort -u)
fi
