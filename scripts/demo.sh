#!/usr/bin/env bash
# make demo: the Anypoint simulator, the mcpguard server and one protection
# of examples/protect-spec.json, followed live with mcpguardctl.
#
# Needs Go and a local Postgres on 127.0.0.1:5432 that lets user postgres in
# (MCPGUARD_DEMO_PG names another server). It creates a database with a
# random name and drops it at exit, picks free ports, and edits no Postgres
# configuration unless given --trust-local-postgres.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
	cat <<'USAGE'
Usage: scripts/demo.sh [--trust-local-postgres]
  (make demo DEMO_FLAGS=--trust-local-postgres)

  --trust-local-postgres  if user postgres cannot log in on 127.0.0.1, add a
                          trust line for it to pg_hba.conf and reload Postgres
                          (a change to your Postgres configuration)
Environment: MCPGUARD_DEMO_PG (default postgres://postgres@127.0.0.1:5432)
USAGE
}

PG_ALLOW_HBA_EDIT=0
for arg in "$@"; do
	case "$arg" in
	--trust-local-postgres) PG_ALLOW_HBA_EDIT=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "demo: unknown argument $arg" >&2; usage >&2; exit 2 ;;
	esac
done
export PG_ALLOW_HBA_EDIT

PGURL=${MCPGUARD_DEMO_PG:-postgres://postgres@127.0.0.1:5432}
DB=mcpguard_demo_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
WORK=$(mktemp -d)
pids=()
db_created=0
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "$db_created" = 1 ]; then
		psql "$PGURL/postgres" -qtAc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 &&
			echo "==> dropped database $DB" || echo "demo: could not drop database $DB; drop it by hand" >&2
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# port_open says whether something listens on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port prints a port nothing listens on, other than those given.
free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 40000))
		case " $* " in *" $p "*) continue ;; esac
		if ! port_open "$p"; then
			echo "$p"
			return 0
		fi
	done
	echo "demo: found no free port" >&2
	return 1
}

# wait_for waits until check succeeds while process pid runs.
wait_for() {
	local what=$1 pid=$2 log=$3
	shift 3
	for _ in $(seq 1 200); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "demo: the $what exited:" >&2
			tail -20 "$log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "demo: the $what did not start:" >&2
	tail -20 "$log" >&2
	return 1
}

if [ -z "${MCPGUARD_DEMO_PG:-}" ]; then
	source scripts/postgres.sh
	ensure_postgres || exit 1
fi
if ! psql "$PGURL/postgres" -qtAc 'select 1' >/dev/null 2>&1; then
	echo "demo: cannot log in to $PGURL as its user:" >&2
	psql "$PGURL/postgres" -qtAc 'select 1' 2>&1 | head -3 >&2 || true
	echo "Let user postgres in on 127.0.0.1 (make demo DEMO_FLAGS=--trust-local-postgres adds a trust line to pg_hba.conf), or set MCPGUARD_DEMO_PG to a URL that works." >&2
	exit 1
fi

echo "==> building"
go build -o bin/mcpguard ./cmd/server
go build -o bin/anypoint-sim ./cmd/anypoint-sim
go build -o bin/mcpguardctl ./cmd/mcpguardctl

echo "==> database $DB (dropped at exit)"
psql "$PGURL/postgres" -qtAc "CREATE DATABASE $DB" >/dev/null
db_created=1

SIM_PORT=$(free_port)
SRV_PORT=$(free_port "$SIM_PORT")
SIM_ADDR=127.0.0.1:$SIM_PORT
SRV_ADDR=127.0.0.1:$SRV_PORT

echo "==> Anypoint simulator on $SIM_ADDR (user alice, password alice-Passw0rd!; deployments take 3s to apply)"
bin/anypoint-sim -addr "$SIM_ADDR" -deployment-delay 3s -publication-delay 1s >"$WORK/sim.log" 2>&1 &
pids+=($!)
wait_for simulator "$!" "$WORK/sim.log" port_open "$SIM_PORT"

API_KEY=demo-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
export MCPGUARD_DATABASE_URL="$PGURL/$DB?sslmode=disable"
export MCPGUARD_HTTP_ADDR="$SRV_ADDR"
export MCPGUARD_ANYPOINT_URL="http://$SIM_ADDR"
export MCPGUARD_API_KEYS="demo=$API_KEY"
export MCPGUARD_CREDENTIALS_KEY="$(head -c 32 /dev/urandom | base64)"
export MCPGUARD_LOG_LEVEL=warn
echo "==> mcpguard server on $SRV_ADDR"
bin/mcpguard serve >"$WORK/server.log" 2>&1 &
pids+=($!)
wait_for server "$!" "$WORK/server.log" bin/mcpguard healthcheck

export MCPGUARD_URL="http://$SRV_ADDR" MCPGUARD_API_KEY="$API_KEY"
echo "==> mcpguardctl protect -f examples/protect-spec.json --watch"
echo
if ! bin/mcpguardctl protect -f examples/protect-spec.json --watch; then
	echo
	echo "server log tail:"
	tail -20 "$WORK/server.log"
	exit 1
fi

# Its lifetime: raise the rate limit (an update operation), then remove it
# (unprotect). Each operation's steps are printed as they run.
ID=$(bin/mcpguardctl list -o json | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)
step() {
	echo
	echo "==> $*"
	echo
	if ! "$@"; then
		echo
		echo "server log tail:"
		tail -20 "$WORK/server.log"
		exit 1
	fi
}
step bin/mcpguardctl update "$ID" -f examples/lifecycle/raise-rate-limit.json --watch
step bin/mcpguardctl remove "$ID" -f examples/lifecycle/credentials.json --watch
step bin/mcpguardctl operations "$ID"
