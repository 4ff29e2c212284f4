#!/bin/sh
# PostgreSQL backups for mcp-auth-gateway (POSIX sh: runs in postgres:16-alpine).
#
#   pg-backup.sh once   one dump, verified, then old dumps pruned
#   pg-backup.sh loop   `once` now and then every BACKUP_INTERVAL_SECONDS
#
# Connection: the libpq variables PGHOST, PGPORT, PGUSER, PGDATABASE, and
# PGPASSWORD or PGPASSWORD_FILE (a file holding the password).
# BACKUP_DIR (default /backups): where dumps go, as
#   <PGDATABASE>-<UTC timestamp>.dump   (pg_dump custom format, compressed)
# BACKUP_RETENTION_DAYS (default 14): dumps older than this are deleted.
# BACKUP_INTERVAL_SECONDS (default 86400): pause between two dumps in `loop`.
#
# Restore with pg-restore.sh (docs/deployment.md, "Backup and restore").
set -eu

: "${PGDATABASE:?set PGDATABASE}"
BACKUP_DIR=${BACKUP_DIR:-/backups}
BACKUP_RETENTION_DAYS=${BACKUP_RETENTION_DAYS:-14}
BACKUP_INTERVAL_SECONDS=${BACKUP_INTERVAL_SECONDS:-86400}

if [ -n "${PGPASSWORD_FILE:-}" ]; then
    PGPASSWORD=$(cat "$PGPASSWORD_FILE")
    export PGPASSWORD
fi

# Dumps hold encrypted tokens, but also e-mail addresses: owner-only files.
umask 077

log() {
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) pg-backup: $*"
}

backup_once() {
    mkdir -p "$BACKUP_DIR"
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    final="$BACKUP_DIR/$PGDATABASE-$stamp.dump"
    partial="$BACKUP_DIR/.$PGDATABASE-$stamp.dump.partial"

    # The backup command (custom format, compressed; ownership and grants are
    # dropped at restore time with pg_restore --no-owner --no-privileges).
    pg_dump --format=custom --compress=6 --file="$partial" "$PGDATABASE"

    # A dump that pg_restore cannot list is not kept.
    if ! pg_restore --list "$partial" >/dev/null; then
        rm -f "$partial"
        log "dump of $PGDATABASE is unreadable; not kept" >&2
        return 1
    fi
    mv "$partial" "$final"
    touch "$BACKUP_DIR/.last-success"
    log "wrote $final ($(wc -c <"$final" | tr -d ' ') bytes)"

    # Retention: whole days, by modification time.
    find "$BACKUP_DIR" -maxdepth 1 -type f -name "$PGDATABASE-*.dump" \
        -mtime +"$BACKUP_RETENTION_DAYS" -print -exec rm -f {} \; |
        while read -r old; do log "removed $old (older than $BACKUP_RETENTION_DAYS days)"; done
    # Leftovers of interrupted runs.
    find "$BACKUP_DIR" -maxdepth 1 -type f -name ".$PGDATABASE-*.dump.partial" -mmin +60 -exec rm -f {} \;
}

case "${1:-once}" in
    once)
        backup_once
        ;;
    loop)
        trap 'log "stopping"; exit 0' TERM INT
        while :; do
            backup_once || log "backup failed; next attempt in $BACKUP_INTERVAL_SECONDS s" >&2
            # sleep in the background so that TERM is handled at once
            sleep "$BACKUP_INTERVAL_SECONDS" &
            wait $! || true
        done
        ;;
    *)
        echo "usage: $0 once|loop" >&2
        exit 2
        ;;
esac
