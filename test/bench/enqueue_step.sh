#!/usr/bin/env bash
# Benchmark (not a test): one enqueue step (select the next repository, apply
# its start, send the request) must not depend on the size of the table.
# Two databases on one throw-away cluster hold 10 000 and 10 000 000
# repositories, nearly all import_done and a few in default; capacity 1 and no
# tag limit, so each run_enqueuer() call starts exactly one repository (one
# PUT to the registry simulator), after which the started one is set to
# import_done outside the timing. enqueue_waiting_time is 1 microsecond, so
# every cycle evaluates the waiting-time gate over the whole table without
# being held up by it. Prints the median of several single-step cycles for
# each size, the ratio (goal <= 2x), and EXPLAIN (ANALYZE, BUFFERS) of the
# enqueuer's queries (src/control/candidates.c) on the large table.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/cluster.sh
SMALL=${SMALL:-10000} LARGE=${LARGE:-10000000} STEPS=${STEPS:-15} WARMUP=${WARMUP:-3} DEFAULTS=${DEFAULTS:-50}

dir=$(mktemp -d /tmp/registry_migration_bench.XXXXXX)
chmod 755 "$dir"
sim_pid=
trap '[ -n "$sim_pid" ] && kill "$sim_pid"; cluster_stop "$dir/pg"; rm -rf "$dir"' EXIT
# Every path exists on the old registry; steps never end during the run.
/usr/bin/python3 test/simulator/registry_simulator.py --port-file "$dir/port" \
    --auto-create --pre-import-seconds 3600 --request-log-size 1000 >/dev/null &
sim_pid=$!
for _ in $(seq 50); do [ -s "$dir/port" ] && break; sleep 0.1; done
url=http://127.0.0.1:$(cat "$dir/port")

cluster_start "$dir/pg" -c shared_buffers=1GB -c maintenance_work_mem=1GB -c max_wal_size=8GB \
    -c checkpoint_timeout=30min -c synchronous_commit=off -c max_parallel_workers_per_gather=0
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# A database with $1 repositories: $1 - DEFAULTS import_done, DEFAULTS in default
# (the oldest created_at last, so the new ones are not simply the first rows).
load() {
    local db=$1 n=$2 t0
    t0=$(now)
    createdb "$db"
    psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<SQL
CREATE EXTENSION registry_migration;
UPDATE registry_migration.settings SET enabled = true, capacity = 1, max_tags_count = 0,
       enqueue_waiting_time = '1 microsecond';
INSERT INTO registry_migration.repositories
       (path, created_at, state, pre_import_started_at, pre_import_done_at, import_started_at, import_done_at)
SELECT 'done/g' || (i % 1000) || '/repo-' || i, t, 'import_done', t + interval '1 min',
       t + interval '20 min', t + interval '21 min', t + interval '22 min'
  FROM generate_series(1, $n - $DEFAULTS) AS i,
       LATERAL (SELECT '2021-01-01'::timestamptz + i * interval '1 s' AS t) AS c;
INSERT INTO registry_migration.repositories (path, created_at)
SELECT 'new/g' || (i % 10) || '/repo-' || i, '2023-01-01'::timestamptz + i * interval '1 s'
  FROM generate_series(1, $DEFAULTS) AS i;
VACUUM ANALYZE registry_migration.repositories;
SQL
    echo "  loaded $n repositories into $db in $(elapsed "$t0") s ($(psql -X -At -d "$db" -c \
        "SELECT pg_size_pretty(pg_total_relation_size('registry_migration.repositories'))"))"
}

# The median, in ms, of STEPS single-step cycles (after WARMUP untimed ones).
steps() {
    local db=$1
    {
        echo "SET registry_migration.registry_url = '$url';"
        cat <<'SQL'
CREATE TEMP TABLE timings (ms float8);
CREATE FUNCTION pg_temp.step() RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); s jsonb; ms float8;
BEGIN
    s := registry_migration.run_enqueuer();
    ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
    IF jsonb_array_length(s->'started') <> 1 OR s->>'stopped' <> 'at_capacity' THEN
        RAISE EXCEPTION 'expected exactly one start: %', s;
    END IF;
    RETURN ms;
END $$;
CREATE FUNCTION pg_temp.finish() RETURNS void LANGUAGE sql AS $$
    UPDATE registry_migration.repositories SET state = 'import_done', import_done_at = clock_timestamp()
     WHERE state = 'pre_importing' $$;
SQL
        for _ in $(seq "$WARMUP"); do echo "SELECT pg_temp.step(); SELECT pg_temp.finish();"; done
        echo "TRUNCATE timings;"
        for _ in $(seq "$STEPS"); do echo "INSERT INTO timings SELECT pg_temp.step(); SELECT pg_temp.finish();"; done
        echo "\\o"
        echo "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
                     round(min(ms)::numeric, 2), round(max(ms)::numeric, 2) FROM timings;"
    } | psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -o /dev/null | tail -1
}

echo "enqueue step benchmark: $SMALL vs $LARGE repositories ($DEFAULTS in default, the rest import_done)"
load small "$SMALL"
IFS='|' read -r small_med small_min small_max <<<"$(steps small)"
echo "  $SMALL: median ${small_med} ms (min $small_min, max $small_max) over $STEPS steps"
echo "  loading $LARGE repositories (a few minutes) ..."
load large "$LARGE"
IFS='|' read -r large_med large_min large_max <<<"$(steps large)"
echo "  $LARGE: median ${large_med} ms (min $large_min, max $large_max) over $STEPS steps"
awk -v a="$small_med" -v b="$large_med" 'BEGIN {
    printf "  ratio '"$LARGE"' / '"$SMALL"': %.2fx (goal: <= 2x)\n", b / a }'

# The enqueuer's queries (src/control/candidates.c), as the prepared statements it keeps:
# shown as generic plans, which a long-lived backend ends up using.
echo
echo "EXPLAIN (ANALYZE, BUFFERS) on $LARGE repositories (generic plans; \$1 = the ids handled so far):"
psql -X -q -v ON_ERROR_STOP=1 -d large <<'SQL'
SET plan_cache_mode = force_generic_plan;
PREPARE in_process AS
SELECT count(*) FROM registry_migration.repositories
 WHERE state IN ('pre_importing', 'pre_import_done', 'importing');
PREPARE final_import(bigint[]) AS
SELECT id, path FROM registry_migration.repositories
 WHERE state = 'pre_import_done' AND id <> ALL($1)
 ORDER BY pre_import_done_at, id LIMIT 1;
PREPARE aborted(bigint[]) AS
SELECT id, path FROM registry_migration.repositories r
 WHERE state = 'import_aborted' AND id <> ALL($1)
   AND (SELECT NOT EXISTS (SELECT FROM registry_migration.denied_namespaces d
                            WHERE d.root_namespace = r.root_namespace))
 ORDER BY aborted_at, id LIMIT 1;
PREPARE new_one(bigint[], timestamptz, text[]) AS
SELECT id, path FROM registry_migration.repositories r
 WHERE state = 'default' AND id <> ALL($1)
   AND ($2::timestamptz IS NULL OR created_at < $2)
   AND ($3::text[] IS NULL OR coalesce(plan, 'free') = ANY ($3))
   AND (SELECT NOT EXISTS (SELECT FROM registry_migration.denied_namespaces d
                            WHERE d.root_namespace = r.root_namespace))
 ORDER BY created_at, id LIMIT 1;
\echo '-- in-process count'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE in_process;
\echo '-- final import candidate'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE final_import('{}');
\echo '-- aborted candidate'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE aborted('{}');
\echo '-- new candidate'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE new_one('{1,2,3}', NULL, NULL);
\echo '-- new candidate, with created_before and target_plans set'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE new_one('{1,2,3}', '2030-01-01', '{free}');
PREPARE waiting(timestamptz) AS
SELECT greatest(
  (SELECT max(pre_import_done_at) FROM registry_migration.repositories WHERE state = 'pre_import_done'),
  (SELECT max(import_done_at) FROM registry_migration.repositories WHERE state = 'import_done'),
  (SELECT max(aborted_at) FROM registry_migration.repositories WHERE state = 'import_aborted'),
  (SELECT max(skipped_at) FROM registry_migration.repositories WHERE state = 'import_skipped'),
  (SELECT max(greatest(pre_import_done_at, import_done_at, aborted_at, skipped_at))
     FROM registry_migration.repositories
    WHERE greatest(pre_import_done_at, import_done_at, aborted_at, skipped_at)
          > CASE state WHEN 'pre_import_done' THEN pre_import_done_at WHEN 'import_done' THEN import_done_at
                       WHEN 'import_aborted' THEN aborted_at WHEN 'import_skipped' THEN skipped_at END)) > $1;
\echo '-- waiting time: the latest finish (the own column of each state, then the later other ones)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE waiting(now() - interval '1 hour');
-- Direct changes that leave another finish column later than the row's own,
-- in 100 000 rows: they fill repositories_later_finish, and the check still
-- reads the last entry of each index.
UPDATE registry_migration.repositories SET aborted_at = import_done_at + interval '1 min'
 WHERE state = 'import_done' AND id <= 100000;
VACUUM ANALYZE registry_migration.repositories;
\echo '-- waiting time, with 100 000 rows whose aborted_at is later than their import_done_at'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE waiting(now() - interval '1 hour');
SQL
