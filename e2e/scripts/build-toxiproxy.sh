#!/usr/bin/env bash
# Builds Toxiproxy (the network-fault proxy the emulated multi-region testbed puts on every
# participant-to-aggregator path) from the Go module proxy, once per version, into a cache
# outside the clone. Prints the binary's path on stdout. None of its Go code is kept here.
set -euo pipefail

TOXIPROXY_VERSION="${TOXIPROXY_VERSION:-v2.12.0}"
CACHE="${FEDSKY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fedsky}"
BIN="$CACHE/bin/toxiproxy-$TOXIPROXY_VERSION"
if [ -x "$BIN/toxiproxy-server" ]; then echo "$BIN/toxiproxy-server"; exit 0; fi

mod="$CACHE/gomod/toxiproxy-$TOXIPROXY_VERSION"
mkdir -p "$BIN" "$mod"
echo "[build-toxiproxy] building toxiproxy-server $TOXIPROXY_VERSION" >&2
export GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=0
[ -f "$mod/go.mod" ] || (cd "$mod" && go mod init fedsky.dev/e2e-toxiproxy >/dev/null 2>&1)
(cd "$mod" && go get "github.com/Shopify/toxiproxy/v2@$TOXIPROXY_VERSION" >&2 \
  && go get "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" >&2)
(cd "$mod" && go build -ldflags "-s -w" -o "$BIN/toxiproxy-server.tmp" \
  github.com/Shopify/toxiproxy/v2/cmd/server)
mv "$BIN/toxiproxy-server.tmp" "$BIN/toxiproxy-server"
echo "$BIN/toxiproxy-server"
