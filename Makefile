# fedsky command runner. CI (.ci/run) calls `make test`; every recipe works on a fresh clone.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
# --locked: builds use exactly the committed Cargo.lock; a dependency change that did not
# update it fails instead of resolving something new.
CARGO ?= cargo --locked
CRD_YAML := charts/fedsky/files/crds.yaml

.PHONY: test fmt fmt-check lint generate generate-check tests control-plane

## test: everything CI runs — format, lint, generated-file check, unit and real-control-plane tests
test: fmt-check lint generate-check tests participant-lint participant-test process-runtime-test quickstart-test quickstart-cluster-test terraform-check gitops-check

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --all-targets -- -D warnings

## generate: CRD YAML and the API reference from the Rust types
# Written to a temporary file first so a failed build never truncates the committed file.
generate:
	$(CARGO) run -q -p fedsky-crds --bin crdgen > $(CRD_YAML).tmp && mv $(CRD_YAML).tmp $(CRD_YAML)
	$(CARGO) run -q -p fedsky-crds --bin apidoc > docs/api-reference.md.tmp && mv docs/api-reference.md.tmp docs/api-reference.md

generate-check:
	$(CARGO) run -q -p fedsky-crds --bin crdgen -- --check $(CRD_YAML)
	$(CARGO) run -q -p fedsky-crds --bin apidoc -- --check docs/api-reference.md

## diagrams: docs/diagrams/*.svg from their Graphviz sources (needs `dot`, Debian's graphviz)
.PHONY: diagrams
diagrams:
	for f in docs/diagrams/*.dot; do dot -Tsvg "$$f" -o "$${f%.dot}.svg.tmp" && mv "$${f%.dot}.svg.tmp" "$${f%.dot}.svg"; done

## quickstart: set up and run examples/covid-xray/ on this machine (see README)
.PHONY: quickstart
quickstart:
	./e2e/quickstart.sh

## quickstart-test: command one as an end-to-end test — a short `make quickstart` (4 rounds,
## 120 images per hospital, exits when the job is done) that fails unless the job succeeds,
## accuracy rises over the rounds and the downloaded model matches the status's sha256
.PHONY: quickstart-test
quickstart-test: control-plane participant-build
	dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	QUICKSTART_DIR="$$dir" QUICKSTART_ROUNDS=4 QUICKSTART_IMAGES=120 QUICKSTART_CHECK=1 \
		QUICKSTART_HOLD=0 ./e2e/quickstart.sh

## quickstart-cluster: the same example on real nodes (kubelet, containerd, CNI) that run
## fedsky's images, the operator installed by the chart (root only; see README)
.PHONY: quickstart-cluster
quickstart-cluster:
	./e2e/quickstart.sh --real-nodes

## quickstart-cluster-test: command `make quickstart-cluster` as an end-to-end test, as
## quickstart-test does (4 rounds, 120 images per hospital), on the test images
.PHONY: quickstart-cluster-test
quickstart-cluster-test: control-plane test-images
	dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	FEDSKY_IMAGE_ARCHIVES="$(IMAGE_ARCHIVES)" QUICKSTART_DIR="$$dir" QUICKSTART_ROUNDS=4 \
		QUICKSTART_IMAGES=120 QUICKSTART_CHECK=1 QUICKSTART_HOLD=0 ./e2e/quickstart.sh --real-nodes

## control-plane: build (or reuse from the cache) kube-apiserver, etcd, kwok, kubectl, helm
control-plane:
	./e2e/scripts/build-control-plane.sh

## terraform-check: tofu fmt -check over terraform/, then tofu validate and tofu test for the
## folders whose providers are built (OpenTofu and providers from the Go module proxy, cached)
.PHONY: terraform-check
terraform-check:
	./terraform/check.sh

## gitops-check: the Argo CD health checks against their fixtures (charts/fedsky/argocd/test.sh,
## on Debian's lua5.4 and lua-cjson, installed where missing) and `kubectl kustomize` of
## each examples/gitops/ overlay
.PHONY: gitops-check
gitops-check: control-plane
	lua5.4 -e 'require "cjson"' 2>/dev/null || ./e2e/scripts/lua-packages.sh
	./charts/fedsky/argocd/test.sh
	kubectl="$$(./e2e/scripts/build-control-plane.sh)/kubectl"; \
	for overlay in examples/gitops/overlays/*/; do \
		n=$$("$$kubectl" kustomize "$$overlay" | grep -c '^kind:'); echo "$$overlay: $$n objects"; \
	done

## tests: unit tests and the tests against real control planes (kube-apiserver + etcd +
## kwok on loopback; Toxiproxy for the emulated network), for every default member (the libtorch participant has its own recipe)
tests: control-plane test-images
	FEDSKY_BIN_DIR="$$(./e2e/scripts/build-control-plane.sh)" \
		FEDSKY_IMAGE_ARCHIVES="$(IMAGE_ARCHIVES)" \
		FEDSKY_TOXIPROXY_BIN="$$(./e2e/scripts/build-toxiproxy.sh)" \
		$(CARGO) test --workspace --exclude fedsky-participant

## participant-test / participant-lint / participant-build: the libtorch participant, which
## is not a default member. libtorch comes from the venv's torch==2.11.0 wheel
## (requirements-dev.txt): torch-sys asks the venv's python for it (LIBTORCH_USE_PYTORCH=1)
## and LD_LIBRARY_PATH points at the wheel's lib directory at run time. The tests call
## $(PYTHON) to export the reference TorchScript model.
# Resolved, so libtorch's path (which torch-sys's build script records in the cargo cache)
# does not depend on where the clone is.
PARTICIPANT_VENV ?= $(or $(realpath $(CURDIR)/.venv),$(CURDIR)/.venv)
TORCH_LIB = $$($(PARTICIPANT_VENV)/bin/python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
PARTICIPANT_ENV = PATH="$(PARTICIPANT_VENV)/bin:$$PATH" LIBTORCH_USE_PYTORCH=1 \
	PYTHON="$(PARTICIPANT_VENV)/bin/python" FEDSKY_TORCH_LIB="$(TORCH_LIB)" \
	LD_LIBRARY_PATH="$(TORCH_LIB)$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}"

.PHONY: participant-build participant-test participant-lint

participant-build:
	$(PARTICIPANT_ENV) $(CARGO) build -p fedsky-participant --bins

participant-test:
	$(PARTICIPANT_ENV) $(CARGO) test -p fedsky-participant

participant-lint:
	$(CARGO) fmt -p fedsky-participant -- --check
	$(PARTICIPANT_ENV) $(CARGO) clippy -p fedsky-participant --all-targets -- -D warnings

## images: the fedsky-operator, -aggregator and -participant images (images/*.Containerfile,
## FROM scratch, built with buildah); prints tags, digests, sizes and build times.
## PARTICIPANT_CUDA=1 builds the participant with CUDA (tag <version>-cuda); IMAGE_REPO
## sets the registry (default ghcr.io/fedsky). Not part of `make test`.
## images-check: each image prints --version under podman as uid 65532, read-only root.
.PHONY: images images-check
images:
	PYTHON="$(PARTICIPANT_VENV)/bin/python" ./images/build.sh

images-check:
	./images/check.sh

## test-images: the images the tests' real nodes run, from the debug build the tests use
## (tag <version>-debug) plus the nodes' pause image, written as OCI archives to
## IMAGE_ARCHIVES (default: the cache folder outside the clone)
IMAGE_ARCHIVES ?= $(or $(FEDSKY_CACHE),$(HOME)/.cache/fedsky)/images
.PHONY: test-images
test-images: participant-build
	PYTHON="$(PARTICIPANT_VENV)/bin/python" IMAGE_PROFILE=debug IMAGE_ARCHIVES="$(IMAGE_ARCHIVES)" \
		IMAGES="pause operator aggregator participant" ./images/build.sh

## bench-placement: fedsky NSGA-II vs pymoo (venv .venv) and moors, placement spaces 1e4..1e10, the seed-result check
.PHONY: bench-placement
bench-placement:
	test -x .venv/bin/python || python3 -m venv .venv
	.venv/bin/python -c 'import pymoo' 2>/dev/null || .venv/bin/pip install -q pymoo
	$(CARGO) run --release -q -p fedsky-placement --bin placement-bench -- all
	$(CARGO) run --release -q --manifest-path operator/placement/bench/moors/Cargo.toml

## bench-operator: the operator (its release binary, as a separate process) on the testbed with
## 1,000 FederatedJobs and 500 simulated nodes: its RSS and apply→Placed/AggregatorReady
## latency (p50/p90/p99/max), printed as tables. Smaller: OPERATOR_BENCH_ARGS="--jobs 50 --nodes 40"
OPERATOR_BENCH_ARGS ?= --jobs 1000 --nodes 500
.PHONY: bench-operator
bench-operator: control-plane
	$(CARGO) build --release -p fedsky-operator -p fedsky-e2e --bin fedsky-operator --bin scale-bench
	FEDSKY_BIN_DIR="$$(./e2e/scripts/build-control-plane.sh)" \
		$(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/release/scale-bench $(OPERATOR_BENCH_ARGS)

## process-runtime-test: the operator's process runtime end to end — a job placed on real
## control planes, its aggregator and libtorch participants run as local processes; the
## model store on moto's S3 with keepVersions (model_store); the Grafana dashboard's
## queries against live scrapes of the operator and an aggregator (dashboard_metrics); a job's
## MLflow run, metrics and registered model on a real MLflow server (mlflow_tracking); a
## finished job's model downloaded with `kubectl fedsky` after the job is deleted, through
## the hub's model API and the user's RBAC (model_retention)
CARGO_TARGET_DIR_OR_DEFAULT = $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
.PHONY: process-runtime-test
process-runtime-test: control-plane participant-build
	$(CARGO) build -p fedsky-aggregator --bin fedsky-aggregator
	$(CARGO) build -p fedsky-cli --bin kubectl-fedsky
	$(PARTICIPANT_ENV) FEDSKY_BIN_DIR="$$(./e2e/scripts/build-control-plane.sh)" \
		FEDSKY_AGGREGATOR_BIN="$(CARGO_TARGET_DIR_OR_DEFAULT)/debug/fedsky-aggregator" \
		FEDSKY_PARTICIPANT_BIN="$(CARGO_TARGET_DIR_OR_DEFAULT)/debug/fedsky-participant" \
		FEDSKY_KUBECTL_PLUGIN_BIN="$(CARGO_TARGET_DIR_OR_DEFAULT)/debug/kubectl-fedsky" \
		$(CARGO) test -p fedsky-operator --test process_runtime --test model_store --test dashboard_metrics \
		--test mlflow_tracking --test model_retention -- --ignored

## participant-bench: tch vs PyTorch eager training throughput on this machine's CPU (a table)
BENCH_ARGS ?= --device cpu --batch-size 32 --steps 30
.PHONY: participant-bench
participant-bench:
	$(PARTICIPANT_ENV) $(CARGO) build --release -p fedsky-participant --bins
	$(PARTICIPANT_ENV) $(CARGO_TARGET_DIR_OR_DEFAULT)/release/fedsky-participant bench $(BENCH_ARGS)

## experiment-orchestration: experiment two (docs/experiments/orchestration.md) — the same
## FederatedJob EXPERIMENT_RUNS times per policy (Random without replacement, the
## resource-aware orchestrator) under the same injected failures, on real control planes
## with the process runtime; writes docs/experiments/orchestration-raw.jsonl and the
## tables in docs/experiments/orchestration.md. Not part of `make test`. EXPERIMENT_MAX_MINUTES
## (0: none) starts no new pair of runs after that long.
EXPERIMENT_RUNS ?= 10
EXPERIMENT_MAX_MINUTES ?= 0
.PHONY: experiment-orchestration
experiment-orchestration: control-plane participant-build
	$(CARGO) build -p fedsky-aggregator --bin fedsky-aggregator
	$(PARTICIPANT_ENV) FEDSKY_BIN_DIR="$$(./e2e/scripts/build-control-plane.sh)" \
		FEDSKY_AGGREGATOR_BIN="$(CARGO_TARGET_DIR_OR_DEFAULT)/debug/fedsky-aggregator" \
		FEDSKY_PARTICIPANT_BIN="$(CARGO_TARGET_DIR_OR_DEFAULT)/debug/fedsky-participant" \
		EXPERIMENT_RUNS="$(EXPERIMENT_RUNS)" EXPERIMENT_MAX_MINUTES="$(EXPERIMENT_MAX_MINUTES)" \
		$(CARGO) test -p fedsky-operator --test orchestration_experiment -- --ignored --nocapture

## experiment-placement: experiment one (docs/experiments/placement.md) — the same three-hospital
## FederatedJob with the aggregator at the naive spot, the cost-first pick and the latency-first
## pick, PLACEMENT_RUNS times each, on real control planes with the process runtime and every
## participant-to-aggregator path shaped by Toxiproxy from the catalog's network matrix; a
## calibration run measures local compute. Writes docs/experiments/placement-raw.jsonl and the
## table in docs/experiments/placement.md. Not part of `make test`.
PLACEMENT_RUNS ?= 3
.PHONY: experiment-placement
# Release binaries: three participants and the aggregator share this machine's cores, and
# debug builds' CPU time would blur what the network adds to a round.
experiment-placement: control-plane
	$(CARGO) build --release -p fedsky-aggregator --bin fedsky-aggregator
	$(PARTICIPANT_ENV) $(CARGO) build --release -p fedsky-participant --bins
	$(PARTICIPANT_ENV) FEDSKY_BIN_DIR="$$(./e2e/scripts/build-control-plane.sh)" \
		FEDSKY_TOXIPROXY_BIN="$$(./e2e/scripts/build-toxiproxy.sh)" \
		FEDSKY_AGGREGATOR_BIN="$(CARGO_TARGET_DIR_OR_DEFAULT)/release/fedsky-aggregator" \
		FEDSKY_PARTICIPANT_BIN="$(CARGO_TARGET_DIR_OR_DEFAULT)/release/fedsky-participant" \
		EXPERIMENT_RUNS="$(PLACEMENT_RUNS)" \
		$(CARGO) test -p fedsky-operator --test placement_experiment -- --ignored --nocapture
