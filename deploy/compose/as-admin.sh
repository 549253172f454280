#!/usr/bin/env bash
# deploy/compose.yaml's `cli` service: runs `coffer ARGS...` against the cluster with the root
# token made by `init`, e.g. `docker compose -f deploy/compose.yaml run --rm cli cluster status`.
set -euo pipefail
COFFER_TOKEN=$(cat "${COFFER_COMPOSE_STATE:-/state}/admin/root-token")
export COFFER_TOKEN
exec coffer "$@"
