#!/usr/bin/env bash
# What a batch of 100 appends costs PostgreSQL's `events` indexes on a large log (issue 28,
# decision 30): the `events` table of the first migration, filled by SQL with ROWS rows
# (default 5,000,000; 100,000 widget streams, time-ordered event ids as the store writes
# them), then batches of 100 rows inserted and rolled back under
# EXPLAIN (ANALYZE, BUFFERS, WAL), right after a checkpoint:
#   one_stream   - 100 events of one stream (the scale bench's batches);
#   many_streams - 100 events of 100 streams (views of 100 widgets).
# Usage: scripts/pg-index-at-scale.sh [ROWS]   (PGHOST/PGUSER as for the tests; about two
# minutes and 5 GB of disk at the default size; the database is dropped at the end)
set -euo pipefail
rows="${1:-5000000}"
here="$(cd "$(dirname "$0")/.." && pwd)"
db="lw_index_at_scale_$$"
export PGHOST="${PGHOST:-127.0.0.1}" PGUSER="${PGUSER:-postgres}"
psql -qc "CREATE DATABASE $db"
trap 'psql -qc "DROP DATABASE IF EXISTS $db"' EXIT
sed -n '/^CREATE TABLE events/,/^CREATE INDEX events_type_position/p' \
    "$here/schemas/sql/postgres/0001_log.sql" | psql -q -d "$db"
row() { # $1 position, $2 stream number, $3 version
    echo "$1, 'views-' || md5(($2)::text)::uuid, $3, lpad(to_hex($1), 32, '0')::uuid,
        'WidgetViewed', 3, now(), 'system', gen_random_uuid(), NULL, repeat('x', 600),
        decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex')"
}
echo "filling $rows rows"
psql -q -d "$db" -c "INSERT INTO events SELECT $(row i 'i % 100000' 'i / 100000')
    FROM generate_series(1, $rows) i"
psql -At -d "$db" -c "SELECT relname, pg_size_pretty(pg_relation_size(oid)) FROM pg_class
    WHERE relname LIKE 'events%' ORDER BY relname"
psql -q -d "$db" -c "CHECKPOINT"
batch() { # $1 pattern, $2 first position
    local p=$2 stream version
    case $1 in
        one_stream) stream="$p"; version="1000000 + i" ;;
        many_streams) stream="($p + i * 7919) % 100000"; version="1000000 + $p + i" ;;
    esac
    printf '%-13s' "$1"
    psql -At -d "$db" -c "BEGIN" -c "EXPLAIN (ANALYZE, BUFFERS, WAL) INSERT INTO events
        SELECT $(row "$p + i" "$stream" "$version") FROM generate_series(1, 100) i" \
        -c "ROLLBACK" | grep -E '^ +(Buffers: shared hit=[0-9]{3,}|WAL:)|Execution Time' \
        | tr -s ' \n' ' '
    echo
}
for round in 1 2 3; do
    for pattern in one_stream many_streams; do
        batch "$pattern" $((100000000 + round * 10000 + ${#pattern} * 1000))
    done
done
