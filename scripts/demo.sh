#!/usr/bin/env bash
# make demo: the Anypoint simulator, the mcpguard server and one protection
# from a spec, shown step by step. Needs a local Postgres; starts it when it
# is installed but stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

PGURL=${MCPGUARD_DEMO_PG:-postgres://postgres@127.0.0.1:5432}
SIM_ADDR=127.0.0.1:18081
SRV_ADDR=127.0.0.1:18080
DB=mcpguard_demo
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

source scripts/postgres.sh
ensure_postgres || exit 1

echo "==> building"
go build -o bin/mcpguard ./cmd/server
go build -o bin/anypoint-sim ./cmd/anypoint-sim
go build -o bin/mcpguard-demo ./cmd/demo

echo "==> fresh database $DB"
psql "$PGURL/postgres" -qtAc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
psql "$PGURL/postgres" -qtAc "CREATE DATABASE $DB" >/dev/null

echo "==> simulator on $SIM_ADDR (deployments take 3s to apply)"
bin/anypoint-sim -addr "$SIM_ADDR" -deployment-delay 3s -publication-delay 1s >"$WORK/sim.log" 2>&1 &
pids+=($!)

API_KEY=demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "==> mcpguard server on $SRV_ADDR"
MCPGUARD_DATABASE_URL="$PGURL/$DB?sslmode=disable" \
MCPGUARD_HTTP_ADDR="$SRV_ADDR" \
MCPGUARD_ANYPOINT_URL="http://$SIM_ADDR" \
MCPGUARD_API_KEYS="demo=$API_KEY" \
MCPGUARD_CREDENTIALS_KEY="$(head -c 32 /dev/urandom | base64)" \
MCPGUARD_LOG_LEVEL=warn \
  bin/mcpguard serve >"$WORK/server.log" 2>&1 &
pids+=($!)

for i in $(seq 1 100); do
  if curl -fsS "http://$SRV_ADDR/readyz" >/dev/null 2>&1; then break; fi
  if [ "$i" = 100 ]; then echo "server did not become ready:"; tail -20 "$WORK/server.log"; exit 1; fi
  sleep 0.1
done

echo
MCPGUARD_DEMO_API_KEY="$API_KEY" MCPGUARD_DEMO_PASSWORD="${MCPGUARD_DEMO_PASSWORD:-alice-Passw0rd!}" \
  bin/mcpguard-demo -server "http://$SRV_ADDR" || { echo; echo "server log tail:"; tail -20 "$WORK/server.log"; exit 1; }
