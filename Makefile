# fedsky command runner. CI (.ci/run) calls `make test`; every recipe works on a fresh clone.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
CRD_YAML := charts/fedsky/crds/fedsky.yaml

.PHONY: test fmt fmt-check lint generate generate-check tests control-plane

## test: everything CI runs — format, lint, generated-file check, unit and real-control-plane tests
test: fmt-check lint generate-check tests

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --all-targets -- -D warnings

## generate: CRD YAML and the API reference from the Rust types
generate:
	$(CARGO) run -q -p fedsky-crds --bin crdgen > $(CRD_YAML)
	$(CARGO) run -q -p fedsky-crds --bin apidoc > docs/api-reference.md

generate-check:
	$(CARGO) run -q -p fedsky-crds --bin crdgen -- --check $(CRD_YAML)
	$(CARGO) run -q -p fedsky-crds --bin apidoc -- --check docs/api-reference.md

## control-plane: build (or reuse from the cache) kube-apiserver, etcd, kwok, kubectl, helm
control-plane:
	./e2e/scripts/build-control-plane.sh

## tests: unit tests and the tests against real control planes (kube-apiserver + etcd +
## kwok on loopback), for every default member (the libtorch participant has its own recipe)
tests: control-plane
	FEDSKY_BIN_DIR="$$(./e2e/scripts/build-control-plane.sh)" $(CARGO) test --workspace --exclude fedsky-participant
