#!/usr/bin/env bash
# Creates (once per requirements-dev.txt content) the Python venv with the tools the tests
# and the quickstart use — torch==2.11.0 for libtorch, moto, pymoo, Flower, scikit-learn —
# from PyPI, in the cache outside the clone, and prints its path. `.venv` in the clone
# should point at it.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${FEDSKY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fedsky}"
key=$(sha256sum requirements-dev.txt | cut -c1-16)
venv="$cache/venv/$key"
# Built in place (venvs are not relocatable: scripts name their interpreter's path); the
# marker is written last, so an interrupted install is redone.
if [ ! -f "$venv/.complete" ]; then
  echo "creating Python venv $key (torch and test tools from PyPI)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip >&2
  # Large wheels (torch, CUDA libraries) may need several resumed downloads.
  "$venv/bin/pip" install --quiet --resume-retries 50 -r requirements-dev.txt >&2
  touch "$venv/.complete"
fi
echo "$venv"
