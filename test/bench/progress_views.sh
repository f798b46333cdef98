#!/usr/bin/env bash
# Benchmark (not a test): the per-call time of the state_counts and progress
# views with 10 000 000 repositories, against the full count they used to
# run (the 1.0 definitions, re-created as temporary views), in the same run
# on a throw-away cluster. The table holds a migration well under way: most
# repositories imported or skipped days ago, RECENT of them finished in the
# last hour (changed after the VACUUM, as a live migration leaves them), a
# million still in default, 50 in process. Prints the median and best of
# CALLS calls of each, the ratio, and what the counts cost a writer: a
# single-row change of state with the counting triggers and without.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/cluster.sh
N=${N:-10000000} RECENT=${RECENT:-3000} DEFAULTS=${DEFAULTS:-1000000} CALLS=${CALLS:-20}
WRITES=${WRITES:-5000}

dir=$(mktemp -d /tmp/registry_migration_bench.XXXXXX)
chmod 755 "$dir"
trap 'cluster_stop "$dir/pg"; rm -rf "$dir"' EXIT
cluster_start "$dir/pg" -c shared_buffers=1GB -c maintenance_work_mem=1GB -c work_mem=64MB \
    -c max_wal_size=8GB -c checkpoint_timeout=30min -c synchronous_commit=off \
    -c max_parallel_workers_per_gather=0

t0=$(date +%s)
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION registry_migration;
-- One statement, as a bulk load would: the counting trigger sees it once.
INSERT INTO registry_migration.repositories
       (path, state, created_at, pre_import_started_at, pre_import_done_at, import_started_at,
        import_done_at, skipped_at, skipped_reason)
SELECT 'bench/group-' || i / 1000 || '/repo-' || i, s,
       now() - interval '30 days', t, t, t,
       CASE WHEN s = 'import_done' THEN t END,
       CASE WHEN s = 'import_skipped' THEN t END,
       CASE WHEN s = 'import_skipped' THEN 'too_many_tags'::registry_migration.skip_reason END
  FROM (SELECT i, now() - interval '3 days' AS t,
               CASE WHEN i <= $DEFAULTS THEN 'default'
                    WHEN i % 10 = 0 THEN 'import_skipped'
                    ELSE 'import_done' END::registry_migration.migration_state AS s
          FROM generate_series(1, $N) AS i) AS g;
VACUUM ANALYZE registry_migration.repositories;
-- A live migration: some finished in the last hour, some in process.
UPDATE registry_migration.repositories
   SET import_done_at = now() - random() * interval '55 minutes'
 WHERE id IN (SELECT id FROM registry_migration.repositories
               WHERE state = 'import_done' ORDER BY id DESC LIMIT $RECENT);
UPDATE registry_migration.repositories
   SET state = 'importing', import_started_at = now(), import_done_at = NULL
 WHERE id IN (SELECT id FROM registry_migration.repositories
               WHERE state = 'default' ORDER BY id LIMIT 50);
SQL
load_s=$(( $(date +%s) - t0 ))

# The views as 1.0 defined them: full counts of the table (with the rate
# measured as 1.1 measures it, so that both answer the same).
timing=$(psql -X -q -At -v ON_ERROR_STOP=1 <<SQL
SET search_path = registry_migration;
CREATE TEMP VIEW full_state_counts AS
SELECT s.state, count(r.id) AS repositories
  FROM unnest(enum_range(NULL::migration_state)) AS s(state)
  LEFT JOIN repositories AS r ON r.state = s.state
 GROUP BY s.state
 ORDER BY s.state;
CREATE TEMP VIEW full_progress AS
WITH finishes AS (
    SELECT CASE state WHEN 'import_done' THEN import_done_at ELSE skipped_at END AS at,
           coalesce(pre_import_started_at, import_started_at,
                    CASE state WHEN 'import_done' THEN import_done_at ELSE skipped_at END) AS began
      FROM repositories WHERE state IN ('import_done', 'import_skipped')),
recent AS (
    SELECT count(*) AS finished,
           greatest(extract(epoch FROM now() - greatest(least(min(began), min(at)),
                                                        now() - interval '1 hour')), 1) AS seconds
      FROM finishes WHERE at > now() - interval '1 hour'),
counts AS (
    SELECT count(*) FILTER (WHERE state = 'import_done') AS done,
           count(*) FILTER (WHERE state = 'import_skipped') AS skipped,
           count(*) FILTER (WHERE state IN ('default', 'import_aborted')) AS remaining,
           count(*) FILTER (WHERE state IN ('pre_importing', 'pre_import_done', 'importing'))
               AS in_process
      FROM repositories)
SELECT c.done, c.skipped, c.remaining, c.in_process,
       round(r.finished * 3600 / r.seconds, 1) AS recent_rate_per_hour,
       CASE WHEN c.remaining + c.in_process = 0 THEN interval '0'
            WHEN r.finished > 0
            THEN make_interval(secs => round((c.remaining + c.in_process) * r.seconds / r.finished))
       END AS estimated_time_to_finish
  FROM counts AS c, recent AS r;
-- Median and best milliseconds of n calls of a query, each run to the end.
CREATE FUNCTION pg_temp.per_call(query text, n integer) RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE
    t0 timestamptz;
    ms float8[] := '{}';
BEGIN
    FOR i IN 1..n LOOP
        t0 := clock_timestamp();
        EXECUTE query;
        ms := ms || extract(epoch FROM clock_timestamp() - t0)::float8 * 1000;
    END LOOP;
    RETURN (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY m) || '|' || min(m) FROM unnest(ms) AS m);
END \$\$;
-- Same answers first (one transaction: the same now()).
BEGIN;
SELECT CASE WHEN (SELECT array_agg(s ORDER BY state) FROM state_counts s)::text
               = (SELECT array_agg(s ORDER BY state) FROM full_state_counts s)::text
             AND (SELECT p::text FROM progress p) = (SELECT p::text FROM full_progress p)
            THEN 'same' ELSE 'DIFFERENT' END;
COMMIT;
SELECT pg_temp.per_call('SELECT * FROM full_state_counts', greatest($CALLS / 4, 3));
SELECT pg_temp.per_call('SELECT * FROM state_counts', $CALLS);
SELECT pg_temp.per_call('SELECT * FROM full_progress', greatest($CALLS / 4, 3));
SELECT pg_temp.per_call('SELECT * FROM progress', $CALLS);
SQL
)
{ read -r same; read -r full_sc; read -r new_sc; read -r full_p; read -r new_p; } <<<"$timing"

# A writer's cost: single-row changes of state, each its own statement, with
# the counting triggers and with them disabled.
writes=$(psql -X -q -At -v ON_ERROR_STOP=1 <<SQL
SET search_path = registry_migration;
CREATE FUNCTION pg_temp.flip(n integer) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    FOR i IN 1..n LOOP
        UPDATE repositories
           SET state = CASE state WHEN 'default' THEN 'import_aborted' ELSE 'default' END::migration_state,
               aborted_at = now(), retries_count = 1
         WHERE id = 1 + i % 1000;
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000000 / n;
END \$\$;
SELECT pg_temp.flip($WRITES);
ALTER TABLE repositories DISABLE TRIGGER count_updates;
SELECT pg_temp.flip($WRITES);
ALTER TABLE repositories ENABLE TRIGGER count_updates;
SELECT count(*) FROM recount_states();
SQL
)
{ read -r with_us; read -r without_us; read -r _recount; } <<<"$writes"

echo "progress and state_counts with $N repositories ($RECENT finished in the last hour), loaded in ${load_s} s:"
echo "  answers of the views and of the full count: $same"
awk -v a="$full_sc" -v b="$new_sc" -v c="$full_p" -v d="$new_p" -v n="$CALLS" 'BEGIN {
    split(a, A, "|"); split(b, B, "|"); split(c, C, "|"); split(d, D, "|")
    printf "  state_counts: full count %.1f ms (best %.1f), counts %.3f ms (best %.3f) per call: %.0fx\n", A[1], A[2], B[1], B[2], A[1] / B[1]
    printf "  progress:     full count %.1f ms (best %.1f), counts %.3f ms (best %.3f) per call: %.0fx\n", C[1], C[2], D[1], D[2], C[1] / D[1]
    printf "  (median of %d calls with the counts, of fewer with the full count; goal < 10 ms)\n", n }'
awk -v a="$with_us" -v b="$without_us" -v n="$WRITES" 'BEGIN {
    printf "  a single-row change of state: %.1f us with the counting trigger, %.1f us without (+%.1f us), over %d changes\n", a, b, a - b, n }'
