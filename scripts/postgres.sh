# Sourced by scripts that need a local Postgres on 127.0.0.1:5432.
# ensure_postgres starts an installed but stopped cluster; with no Postgres
# installed it prints a one-line hint (or installs it when ALLOW_INSTALL=1).
ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  if [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null 2>&1; then
    local v
    v=$(ls /etc/postgresql | sort -V | tail -1)
    echo "==> starting Postgres $v"
    pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  elif [ "${ALLOW_INSTALL:-0}" = 1 ]; then
    echo "==> installing Postgres"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
    local v
    v=$(ls /etc/postgresql | sort -V | tail -1)
    local hba="/etc/postgresql/$v/main/pg_hba.conf"
    sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(host\s+all\s+all\s+::1\/128\s+)\S+/\1trust/; s/^(local\s+all\s+postgres\s+)\S+/\1trust/' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$v" main start || pg_ctlcluster --skip-systemctl-redirect "$v" main restart
  else
    echo "Postgres is not installed: run 'apt-get install -y postgresql' (or set MCPGUARD_TEST_DATABASE_URL), then try again." >&2
    return 1
  fi
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return 0
    sleep 0.5
  done
  echo "Postgres did not become ready on 127.0.0.1:5432" >&2
  return 1
}
