#!/usr/bin/env bash
# Benchmark (not a test): the event log's trim, which every cycle runs at its
# start, once a migration is older than event_retention. For each log size
# in SIZES, the log holds that many recent events; purge_events(1000), what
# a cycle runs, is called CALLS times, each time after OLD_PER_CALL events
# older than the retention were added, as a cycle of a long migration finds
# a few rows that have just grown old. The same calls are
# timed with the trim as 1.1 first wrote it (the old rows chosen with
# "id IN (subquery)", re-created here as a function of its own), in the same
# run. Prints the median and worst time per call of each, and the ratio.
# Goal: the time per call does not grow with the size of the log.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/cluster.sh
SIZES=${SIZES:-"100000 300000 1000000"} OLD_PER_CALL=${OLD_PER_CALL:-5} CALLS=${CALLS:-50}

dir=$(mktemp -d /tmp/registry_migration_bench.XXXXXX)
chmod 755 "$dir"
trap 'cluster_stop "$dir/pg"; rm -rf "$dir"' EXIT
cluster_start "$dir/pg" -c shared_buffers=512MB -c max_wal_size=4GB -c synchronous_commit=off

q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
q <<'SQL'
CREATE EXTENSION registry_migration;
-- The trim as first written: the ids chosen by the subquery, joined back.
CREATE SCHEMA bench;
CREATE FUNCTION bench.purge_as_before(max_rows integer) RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE removed bigint;
BEGIN
    DELETE FROM registry_migration.events WHERE id IN (
        SELECT id FROM registry_migration.events
         WHERE at < (SELECT clock_timestamp() - least(event_retention, interval '1000 years')
                       FROM registry_migration.settings)
         ORDER BY at LIMIT max_rows);
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END $$;
SQL

# Median and worst milliseconds of CALLS calls of $1(1000), each after
# OLD_PER_CALL old events were added, and each of which must remove them.
# Each call commits, as each cycle does.
time_calls() {
    q <<SQL
VACUUM registry_migration.events;
CREATE TEMP TABLE times (ms float8);
DO \$\$
DECLARE t0 timestamptz; removed bigint;
BEGIN
    FOR i IN 1..$CALLS LOOP
        INSERT INTO registry_migration.events
               (repository_id, path, old_state, new_state, cause, event, at)
        SELECT 1, 'bench/old', 'default', 'default', 'admin', 'bench',
               clock_timestamp() - interval '40 days'
          FROM generate_series(1, $OLD_PER_CALL);
        COMMIT;
        t0 := clock_timestamp();
        removed := $1(1000);
        INSERT INTO times VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
        COMMIT;
        IF removed <> $OLD_PER_CALL THEN
            RAISE EXCEPTION 'removed % rows, not $OLD_PER_CALL', removed;
        END IF;
    END LOOP;
END \$\$;
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 3) || ' '
       || round(max(ms)::numeric, 3) FROM times;
SQL
}

echo "event log trim: $CALLS calls of purge_events(1000), each finding $OLD_PER_CALL old rows"
round=0
for size in $SIZES; do
    q <<SQL
TRUNCATE registry_migration.events;
INSERT INTO registry_migration.events (repository_id, path, old_state, new_state, cause, event, at)
SELECT i % 1000, 'bench/g' || i % 100 || '/repo-' || i % 1000, 'default', 'pre_importing',
       'enqueuer', 'start_pre_import', now() - random() * interval '29 days'
  FROM generate_series(1, $size) AS i;
VACUUM ANALYZE registry_migration.events;
SQL
    # Each version first at every other size; a failed call stops the script.
    if (( ++round % 2 )); then
        now=$(time_calls registry_migration.purge_events); before=$(time_calls bench.purge_as_before)
    else
        before=$(time_calls bench.purge_as_before); now=$(time_calls registry_migration.purge_events)
    fi
    read -r now_median now_worst <<<"$now"
    read -r before_median before_worst <<<"$before"
    printf '  %8d recent events: now median %s ms (worst %s), as before %s ms (worst %s), %s x faster\n' \
        "$size" "$now_median" "$now_worst" "$before_median" "$before_worst" \
        "$(awk -v a="$before_median" -v b="$now_median" 'BEGIN { printf "%.0f", a / b }')"
done
