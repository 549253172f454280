#!/usr/bin/env bash
# deploy/compose.yaml's `init` service: everything the nodes need before they first start,
# made once and kept (a rerun changes nothing that exists):
#   pki/         a throwaway CA (pki/ca/ca.pem; its key pki/ca-key.pem) and one certificate
#                per node (pki/<node>/)
#   keyring/     a local KMS keyring per region
#   admin/       the root token (mode 0600; only the `cli` and `setup` services mount it)
#   agent/       the agent's token (made by `setup`)
#   root/        the root token's SHA-256, which the bootstrap node reads at startup
# tests/compose.rs runs this script outside a container with COFFER_COMPOSE_STATE set.
set -euo pipefail

state=${COFFER_COMPOSE_STATE:-/state}
# The image's coffer user; empty: leave ownership as it is (tests).
owner=${COFFER_COMPOSE_OWNER-10001:10001}
nodes=(us-east-1 eu-west-1 ap-south-1)
regions=(us-east eu-west ap-south)

certs=()
for n in "${nodes[@]}"; do
  # Peers dial coffer-<node>.internal; health checks and `docker compose exec` use localhost.
  certs+=(--node "$n=coffer-$n.internal,localhost,127.0.0.1")
done
coffer tls issue --dir "$state/pki" --ca-name "Coffer compose CA" "${certs[@]}"

for r in "${regions[@]}"; do
  coffer kms create-local-keyring --keyring-dir "$state/keyring" --region "$r"
done

umask 077
mkdir -p "$state/admin" "$state/root" "$state/agent"
if [ ! -s "$state/admin/root-token" ]; then
  printf 'cft_%s' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$state/admin/root-token.tmp"
  mv "$state/admin/root-token.tmp" "$state/admin/root-token"
  echo "made $state/admin/root-token"
else
  echo "kept $state/admin/root-token"
fi
sha256sum <"$state/admin/root-token" | cut -d' ' -f1 >"$state/root/root-token.sha256.tmp"
mv "$state/root/root-token.sha256.tmp" "$state/root/root-token.sha256"
chmod 0755 "$state" "$state/root"
chmod 0644 "$state/root/root-token.sha256"

if [ -n "$owner" ]; then
  chown -R "$owner" "$state"
fi
