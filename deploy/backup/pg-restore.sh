#!/bin/sh
# Restore a dump made by pg-backup.sh into a database.
#
#   pg-restore.sh <file.dump> <database>
#
# The database must exist. It may be empty (a fresh `createdb`) or the live
# one: objects in the dump are dropped first (--clean --if-exists). The whole
# restore is one transaction: on any error nothing is changed.
# Connection: PGHOST, PGPORT, PGUSER, and PGPASSWORD or PGPASSWORD_FILE.
#
# Stop the gateway first, and restore with the encryption keys that were in
# use when the dump was taken (docs/deployment.md, "Backup and restore").
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: $0 <file.dump> <database>" >&2
    exit 2
fi
dump=$1
database=$2

if [ -n "${PGPASSWORD_FILE:-}" ]; then
    PGPASSWORD=$(cat "$PGPASSWORD_FILE")
    export PGPASSWORD
fi

# The restore command.
pg_restore --clean --if-exists --no-owner --no-privileges \
    --single-transaction --exit-on-error \
    --dbname="$database" "$dump"

echo "pg-restore: restored $dump into $database"
