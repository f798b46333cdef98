#!/usr/bin/env bash
# Benchmark (not a test): one guard cycle over 1000 stale repositories.
# Every repository is pre_importing, started 10 minutes ago (stale: older
# than max_step_duration, 5 min), and the registry simulator, with 20 ms of
# added latency, reports pre_import_in_progress for each: confirmed running
# but not long-running (pre_import_timeout, 30 min), so the guard leaves every
# one alone and sends no cancel. run_guard() is timed with
# max_concurrent_requests = 1 and = 16, in the same run. Prints both times,
# the ratio (goal >= 10x) and the concurrent cycle against the floor
# latency x ceil(1000 / 16) (goal <= 1.5x).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/cluster.sh
. scripts/lib/services.sh
N=${N:-1000} LATENCY_MS=${LATENCY_MS:-20} CONCURRENCY=${CONCURRENCY:-16}

services_init guard_cycle
start_with_port "$dir/port" /usr/bin/python3 test/simulator/registry_simulator.py \
    --port-file "$dir/port" --pre-import-seconds 3600 >/dev/null
url=http://127.0.0.1:$(cat "$dir/port")

# The registry runs a pre-import of each repository (started through the API,
# without latency), then every registry request gets the latency.
/usr/bin/python3 - "$url" "$N" "$LATENCY_MS" <<'PY'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, n, latency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def call(method, route, body=None):
    req = urllib.request.Request(url + route, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req) as answer:
        return answer.status
call("POST", "/_sim/repositories",
     {"repositories": [{"path": f"bench/repo-{i}"} for i in range(n)]})
with ThreadPoolExecutor(8) as pool:
    codes = list(pool.map(lambda i: call("PUT", f"/gitlab/v1/import/bench/repo-{i}/?import_type=pre"),
                          range(n)))
assert codes == [202] * n, "could not start the pre-imports"
call("POST", "/_sim/config", {"latency_ms": latency})
call("DELETE", "/_sim/requests")
PY

cluster_start "$dir/pg"
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION registry_migration;
UPDATE registry_migration.settings SET guard_batch_size = $N;
INSERT INTO registry_migration.repositories (path, state, pre_import_started_at)
SELECT 'bench/repo-' || i, 'pre_importing', now() - interval '10 minutes'
  FROM generate_series(0, $N - 1) AS i;
VACUUM ANALYZE registry_migration.repositories;
SQL

# Milliseconds of one guard cycle, and how many it left alone / canceled.
run() {
    psql -X -q -At -v ON_ERROR_STOP=1 <<SQL
SET registry_migration.registry_url = '$url';
SET registry_migration.max_concurrent_requests = $1;
CREATE TEMP TABLE t AS SELECT clock_timestamp() AS t0, NULL::jsonb AS s;
UPDATE t SET s = registry_migration.run_guard();
SELECT round(extract(epoch FROM clock_timestamp() - t0) * 1000),
       s->'stale', jsonb_array_length(s->'left_alone'),
       jsonb_array_length(s->'canceled') + jsonb_array_length(s->'aborted') + jsonb_array_length(s->'errors')
  FROM t;
SQL
}

IFS='|' read -r ms1 stale1 alone1 other1 <<<"$(run 1)"
IFS='|' read -r msc stalec alonec otherc <<<"$(run "$CONCURRENCY")"
for v in "$stale1" "$alone1" "$stalec" "$alonec"; do
    [ "$v" = "$N" ] || { echo "unexpected guard summary: stale $stale1/$stalec, left alone $alone1/$alonec of $N"; exit 1; }
done
[ "$other1" = 0 ] && [ "$otherc" = 0 ] || { echo "the guard canceled, aborted or failed something"; exit 1; }
cancels=$(/usr/bin/python3 - "$url" <<'PY'
import json, sys, urllib.request
state = json.load(urllib.request.urlopen(sys.argv[1] + "/_sim/state?repositories=0"))
print(sum(state["requests"].get("cancel", {}).values()), sum(state["requests"].get("status", {}).values()))
PY
)
read -r ncancel nstatus <<<"$cancels"
[ "$ncancel" = 0 ] && [ "$nstatus" = $((2 * N)) ] \
    || { echo "the registry saw $ncancel cancels and $nstatus status requests (expected 0 and $((2 * N)))"; exit 1; }

floor=$(( LATENCY_MS * ((N + CONCURRENCY - 1) / CONCURRENCY) ))
echo "guard cycle over $N stale repositories (confirmed running, left alone), ${LATENCY_MS} ms registry latency:"
echo "  max_concurrent_requests = 1:  ${ms1} ms"
echo "  max_concurrent_requests = $CONCURRENCY: ${msc} ms"
echo "  registry: $nstatus status requests, $ncancel cancels"
awk -v a="$ms1" -v b="$msc" -v f="$floor" -v c="$CONCURRENCY" 'BEGIN {
    printf "  ratio: %.1fx faster concurrently (goal: >= 10x)\n", a / b
    printf "  floor latency x ceil(N / %d) = %d ms; concurrent cycle = %.2fx the floor (goal: <= 1.5x)\n", c, f, b / f }'
