#!/bin/bash
# First start of the PostgreSQL container: one database and one login role per service, and
# PUBLIC may not connect, as deploy/pgctl.py provisions the native stack.
set -euo pipefail
for db in ${TSUNAGU_DATABASES}; do
  var="TSUNAGU_PASSWORD_${db^^}"
  password="${!var:?${var} is not set}"
  psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -v db="$db" -v pw="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'db', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', :'db', :'db') \gexec
SQL
done
