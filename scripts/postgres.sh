# Sourced by .ci/run and scripts/demo.sh: make sure Postgres answers on
# 127.0.0.1:5432.
#
# ensure_postgres starts an installed but stopped cluster. With no Postgres
# installed it installs one when ALLOW_INSTALL=1 (CI), else prints a one-line
# hint and fails. It edits no configuration unless PG_ALLOW_HBA_EDIT=1 (CI,
# or `make demo DEMO_FLAGS=--trust-local-postgres`): then it adds a trust
# line for user postgres on loopback to pg_hba.conf and reloads.

pg_ready() { command -v pg_isready >/dev/null && pg_isready -h 127.0.0.1 -p 5432 -q; }

pg_cluster_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -1; }

# Trust local TCP connections of user postgres (a throwaway local database).
pg_ensure_trust() {
	local version hba
	[ "${PG_ALLOW_HBA_EDIT:-0}" = 1 ] || return 0
	version="$(pg_cluster_version)"
	hba="/etc/postgresql/$version/main/pg_hba.conf"
	[ -f "$hba" ] || return 0
	if ! grep -qE '^host\s+all\s+postgres\s+127\.0\.0\.1/32\s+trust' "$hba"; then
		echo "==> adding a trust line for user postgres on loopback to $hba"
		sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
		pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
	fi
}

ensure_postgres() {
	if ! pg_ready; then
		if [ -z "$(pg_cluster_version)" ]; then
			if [ "${ALLOW_INSTALL:-0}" != 1 ]; then
				echo "Postgres is not installed: run 'apt-get install -y postgresql' (or point MCPGUARD_TEST_DATABASE_URL at a server), then try again." >&2
				return 1
			fi
			echo "==> Postgres is not installed: installing it"
			DEBIAN_FRONTEND=noninteractive apt-get update
			DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
		fi
		pg_ensure_trust
		echo "==> starting Postgres $(pg_cluster_version)"
		pg_ctlcluster --skip-systemctl-redirect "$(pg_cluster_version)" main start || true
		for _ in $(seq 1 60); do
			pg_ready && break
			sleep 1
		done
		if ! pg_ready; then
			echo "Postgres does not answer on 127.0.0.1:5432" >&2
			return 1
		fi
	fi
	if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
		pg_ensure_trust
		sleep 1
	fi
}
