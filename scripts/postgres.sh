#!/usr/bin/env bash
# Starts the local PostgreSQL server that the PostgreSQL store's tests (and a user's first
# try of `--store postgresql://...`) use, from Debian's `postgresql` package. Idempotent.
#   - installs `postgresql` with apt when it is missing;
#   - starts the first cluster (`pg_ctlcluster`), port 5432;
#   - creates the role `fnas` (CREATEDB: the tests make a database per check and drop it)
#     and the database `fnas`, with the password in ~/.pgpass (never in a URL);
#   - prints the store URL: postgresql://fnas@127.0.0.1:5432/fnas
# Environment: FNAS_PG_PASSWORD (default: a random one kept in ~/.pgpass).
set -euo pipefail
say() { printf 'postgres: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  say "installing postgresql (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
read -r version cluster _ < <(pg_lsclusters --no-header | head -1)
if ! pg_lsclusters --no-header | head -1 | grep -q online; then
  say "starting cluster $version/$cluster"
  as_root pg_ctlcluster "$version" "$cluster" start
fi
pgpass="$HOME/.pgpass"
line=$(grep -E '^127\.0\.0\.1:5432:\*:fnas:' "$pgpass" 2>/dev/null | head -1 || true)
if [ -n "$line" ]; then
  password=${line#127.0.0.1:5432:*:fnas:}
else
  password=${FNAS_PG_PASSWORD:-$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')}
  printf '127.0.0.1:5432:*:fnas:%s\n' "$password" >> "$pgpass"
  chmod 600 "$pgpass"
fi
psql_root() { as_root su postgres -c "psql -v ON_ERROR_STOP=1 -qAt -c \"$1\""; }
if [ "$(psql_root "select 1 from pg_roles where rolname = 'fnas'")" != 1 ]; then
  psql_root "create role fnas login createdb password '$password'"
else
  psql_root "alter role fnas login createdb password '$password'"
fi
if [ "$(psql_root "select 1 from pg_database where datname = 'fnas'")" != 1 ]; then
  psql_root "create database fnas owner fnas"
fi
say "ready: postgresql://fnas@127.0.0.1:5432/fnas (password in $pgpass)"
