#!/usr/bin/env bash
# Creates one database per CRM service, owned by $POSTGRES_USER.
#
# Mounted into /docker-entrypoint-initdb.d by docker-compose.yml; the official
# postgres image runs it once, when the data volume is empty, against the
# temporary init server (as the postgres OS user, over the local socket).
# Idempotent, so it is also safe to run by hand against an existing server:
#   docker compose exec -T postgres bash < deploy/postgres/init-databases.sh
set -euo pipefail

: "${POSTGRES_USER:?POSTGRES_USER must be set}"
databases="${CRM_DATABASES:-ingest profile segment campaign}"

for db in $databases; do
  if [[ ! "$db" =~ ^[a-z_][a-z0-9_]*$ ]]; then
    echo "init-databases: refusing database name '$db'" >&2
    exit 1
  fi
  echo "init-databases: ensuring database '$db'"
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" \
    --dbname "${POSTGRES_DB:-$POSTGRES_USER}" --set db="$db" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', current_user)
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')
\gexec
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
done
