#!/usr/bin/env bash
# Benchmark (not a test): the concurrent status interface. 1000 status
# requests to the registry simulator with 20 ms of added latency, sent by
# registry_import_statuses() with max_concurrent_requests = 1 and = 16, in
# the same run. Prints both times, the ratio, and the floor
# latency x ceil(1000 / 16) the concurrent run is compared with.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/cluster.sh
. scripts/lib/services.sh
N=${N:-1000} LATENCY_MS=${LATENCY_MS:-20} CONCURRENCY=${CONCURRENCY:-16}

services_init status_batch
start_with_port "$dir/port" /usr/bin/python3 test/simulator/registry_simulator.py \
    --port-file "$dir/port" --latency-ms "$LATENCY_MS" >/dev/null
url=http://127.0.0.1:$(cat "$dir/port")

# The repositories exist on the new registry with a finished pre-import.
/usr/bin/python3 - "$url" "$N" <<'PY'
import json, sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
repos = [{"path": f"bench/repo-{i}", "status": "pre_import_complete"} for i in range(n)]
req = urllib.request.Request(url + "/_sim/repositories", method="POST",
                             data=json.dumps({"repositories": repos}).encode())
urllib.request.urlopen(req).read()
PY

cluster_start "$dir/pg"
psql -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION registry_migration'

# Milliseconds for one call over all repositories, and how many came back right.
run() {
    psql -X -q -At -v ON_ERROR_STOP=1 <<SQL
SET registry_migration.registry_url = '$url';
SET registry_migration.max_concurrent_requests = $1;
SELECT registry_migration.registry_import_statuses(ARRAY['warm/up']) IS NOT NULL;
CREATE TEMP TABLE t AS SELECT clock_timestamp() AS t0;
SELECT count(*) FILTER (WHERE registry_status = 'pre_import_complete')
  FROM registry_migration.registry_import_statuses(
       ARRAY(SELECT 'bench/repo-' || i FROM generate_series(0, $N - 1) AS i));
SELECT round(extract(epoch FROM clock_timestamp() - t0) * 1000) FROM t;
SQL
}

read -r _ ok1 ms1 <<<"$(run 1 | tr '\n' ' ')"
read -r _ okc msc <<<"$(run "$CONCURRENCY" | tr '\n' ' ')"
[ "$ok1" = "$N" ] && [ "$okc" = "$N" ] || { echo "wrong answers: $ok1 / $okc of $N"; exit 1; }
floor=$(( LATENCY_MS * ((N + CONCURRENCY - 1) / CONCURRENCY) ))
echo "$N status requests, ${LATENCY_MS} ms registry latency:"
echo "  max_concurrent_requests = 1:  ${ms1} ms"
echo "  max_concurrent_requests = $CONCURRENCY: ${msc} ms"
awk -v a="$ms1" -v b="$msc" -v f="$floor" 'BEGIN {
    printf "  ratio: %.1fx faster concurrently (goal: >= 10x)\n", a / b
    printf "  floor latency x ceil(N / %d) = %d ms; concurrent run = %.2fx the floor (goal: <= 1.5x)\n", '"$CONCURRENCY"', f, b / f }'
