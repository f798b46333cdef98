#!/usr/bin/env bash
# Benchmark (not a test): registry_migration.retry_decision (C) against the
# same decision table in PL/pgSQL, each over the same 1 M rows, in the same
# run on a throw-away cluster. Prints both times (best of 3) and the ratio.
# Goal: the C function at least 5x faster.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/cluster.sh
dir=$(mktemp -d /tmp/registry_migration_bench.XXXXXX)
chmod 755 "$dir"
trap 'cluster_stop "$dir/pg"; rm -rf "$dir"' EXIT
cluster_start "$dir/pg" -c max_parallel_workers_per_gather=0

psql -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION registry_migration'
disagreements=$(psql -X -q -At -v ON_ERROR_STOP=1 -f test/bench/retry_decision_plpgsql.sql | tail -1)
[ "$disagreements" = 0 ] || { echo "C and PL/pgSQL disagree on $disagreements inputs"; exit 1; }

# Best of three runs, in milliseconds, of one full pass over the inputs.
best_ms() {
    local fn=$1
    psql -X -q -At -v ON_ERROR_STOP=1 <<SQL
DO \$\$
DECLARE t0 timestamptz; best float8 := 'Infinity'; n bigint;
BEGIN
    FOR i IN 1..3 LOOP
        t0 := clock_timestamp();
        SELECT count(*) INTO n FROM bench_inputs
         WHERE $fn(state, registry_status, retries_count, 3) IS NOT NULL;
        best := least(best, extract(epoch FROM clock_timestamp() - t0) * 1000);
    END LOOP;
    RAISE NOTICE '%', round(best::numeric, 1);
END
\$\$;
SQL
}

c_ms=$(best_ms registry_migration.retry_decision 2>&1 | sed -n 's/^NOTICE: *//p')
plpgsql_ms=$(best_ms bench_retry_decision_plpgsql 2>&1 | sed -n 's/^NOTICE: *//p')
echo "retry_decision over 1000000 rows (best of 3):"
echo "  C:        ${c_ms} ms"
echo "  PL/pgSQL: ${plpgsql_ms} ms"
awk -v c="$c_ms" -v p="$plpgsql_ms" 'BEGIN { printf "  ratio:    %.1fx faster in C (goal: >= 5x)\n", p / c }'
