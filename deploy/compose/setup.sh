#!/usr/bin/env bash
# deploy/compose.yaml's `setup` service: once the cluster serves, what the demo needs, made
# once and kept on a rerun: a policy letting service:demo:app read demo/app/*, a first value
# for demo/app/db-password (random), and a token for the agent in agent/token (mode 0600).
# tests/compose.rs runs this script outside a container with the variables below set.
set -euo pipefail

state=${COFFER_COMPOSE_STATE:-/state}
owner=${COFFER_COMPOSE_OWNER-10001:10001}
nodes=${COFFER_COMPOSE_NODES:-https://coffer-us-east-1.internal:7400 https://coffer-eu-west-1.internal:7400 https://coffer-ap-south-1.internal:7400}
export COFFER_CACERT=${COFFER_CACERT:-$state/pki/ca/ca.pem}
export COFFER_ADDR=${COFFER_ADDR:-${nodes%% *}}
COFFER_TOKEN=$(cat "$state/admin/root-token")
export COFFER_TOKEN

for addr in $nodes; do
  coffer cluster health --addr "$addr" --wait 180s
done

policy=$(mktemp)
trap 'rm -f "$policy"' EXIT
cat >"$policy" <<'JSON'
{"name": "demo-app-read", "statements": [{"effect": "allow", "principals": ["service:demo:app"],
  "actions": ["secrets:read"], "resources": ["demo/app/*"]}]}
JSON
coffer policy put --file "$policy"

if coffer secret get demo/app/db-password >/dev/null 2>&1; then
  echo "kept demo/app/db-password"
else
  coffer secret put demo/app/db-password --generate 32
fi

umask 077
mkdir -p "$state/agent"
if [ ! -s "$state/agent/token" ]; then
  coffer token create --principal service:demo:app --tenant demo --policy demo-app-read --ttl 90d \
    | sed -n 's/^token: *//p' >"$state/agent/token.tmp"
  test -s "$state/agent/token.tmp"
  mv "$state/agent/token.tmp" "$state/agent/token"
  echo "made $state/agent/token"
else
  echo "kept $state/agent/token"
fi
if [ -n "$owner" ]; then
  chown -R "$owner" "$state/agent"
fi
