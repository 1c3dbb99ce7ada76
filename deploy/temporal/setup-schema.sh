#!/bin/sh
# Create or upgrade Temporal's two PostgreSQL databases (run by the `temporal-schema` service).
#
# Every step is idempotent, so `docker compose up` can run it on each start: `create` fails
# harmlessly when the database exists, `setup-schema -v 0.0` is skipped once a newer version
# is recorded, and `update-schema` applies only the versions not yet applied.
set -eu

: "${POSTGRES_SEEDS:?set POSTGRES_SEEDS to the PostgreSQL host}"
: "${POSTGRES_USER:?set POSTGRES_USER to the PostgreSQL user}"
: "${SQL_PASSWORD:?set SQL_PASSWORD to the PostgreSQL password}"
PORT="${DB_PORT:-5432}"
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12

sql_tool() {
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$PORT" -u "$POSTGRES_USER" "$@"
}

for db in temporal temporal_visibility; do
    case "$db" in
        temporal) dir="$SCHEMA_ROOT/temporal/versioned" ;;
        *) dir="$SCHEMA_ROOT/visibility/versioned" ;;
    esac
    echo "temporal-schema: database $db"
    sql_tool --db "$db" create 2>/dev/null || echo "temporal-schema: $db exists (or create failed; setup-schema will say)"
    sql_tool --db "$db" setup-schema -v 0.0
    sql_tool --db "$db" update-schema -d "$dir"
done
echo "temporal-schema: done"
