#!/usr/bin/env bash
# Debian's PostgreSQL on this host for the test suite, as .ci/run uses it: installed when missing,
# started, the `postgres` role trusted on loopback (a throwaway test server, never a deployment)
# and a database `test`, so COTERM_TEST_POSTGRES's default
# (postgresql://postgres@127.0.0.1:5432/test) answers. Run it as root; safe to run again.
set -euo pipefail

if ! command -v pg_ctlcluster >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
changed=0
version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
hba=/etc/postgresql/$version/main/pg_hba.conf
if ! grep -q "coterm-tests" "$hba"; then
  # First match wins in pg_hba.conf: these lines go on top.
  { echo "host all postgres 127.0.0.1/32 trust # coterm-tests"; echo "host all postgres ::1/128 trust # coterm-tests"; cat "$hba"; } > "$hba.new"
  mv "$hba.new" "$hba" && chown postgres:postgres "$hba"
  changed=1
fi
conf=/etc/postgresql/$version/main/postgresql.conf
if ! grep -q "coterm-tests" "$conf"; then
  # The suite runs several stores at once (xdist workers, the storm's three processors).
  echo "max_connections = 300 # coterm-tests" >> "$conf"
  changed=1
fi
if ! grep -q "pg_stat_statements" "$conf"; then
  # `make bench` counts the statements coterm sends per transfer (PostgreSQL's own count).
  echo "shared_preload_libraries = 'pg_stat_statements' # coterm-tests" >> "$conf"
  changed=1
fi
if pg_ctlcluster "$version" main status >/dev/null 2>&1; then
  if [ "$changed" = 1 ]; then pg_ctlcluster "$version" main restart; fi
else
  pg_ctlcluster "$version" main start
fi
for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
psql -q -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
  || psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE test"
echo "PostgreSQL $version answers at postgresql://postgres@127.0.0.1:5432/test"
