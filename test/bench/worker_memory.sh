#!/usr/bin/env bash
# Benchmark (not a test): memory of the background worker over many cycles.
# A throw-away cluster preloads the library; the worker runs the enqueuer every
# 10 ms (the minimum of registry_migration.enqueue_interval) and the guard every
# GUARD_INTERVAL, with the migration enabled and, by default (MODE=steady), a
# small steady migration so that the cycles do real work: capacity 4, steps of
# 50 ms in the registry simulator, notifications delivered by
# scripts/notification_receiver.py (which also wake the worker), every 10th
# repository's pre-import and every 25th one's import failing once (aborts and
# retries), and max_step_duration = 0 so every guard cycle asks the registry
# for the status of every repository in process. MODE=idle: nothing to do.
# WAKE_RATE=R (400) also commits R no-change notifications a second (each
# wakes the worker), to reach more cycles in the time.
# EVENT_RETENTION (default '0'): settings.event_retention. With 0 every
# cycle's purge deletes up to 1000 events, which keeps the purge's delete
# path in every cycle.
#
# Cycles are counted from the worker's one-line summaries in the server log.
# RSS (VmRSS, and its private part RssAnon; RssShmem only grows with the
# shared buffers the worker has touched) is read from /proc/<pid>/status of the
# worker (pid from registry_migration.worker_status): at the first cycles,
# after WARMUP cycles, every 30 s, and at the end. pg_log_backend_memory_contexts()
# gives the worker's memory-context grand total after warm-up and at the end.
# Stops at CYCLES enqueue cycles (100 000) or after DURATION seconds (540),
# whichever comes first; if it stops on time, the growth per cycle is also
# extrapolated to CYCLES, clearly labelled. Goal: growth after warm-up < 2 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/cluster.sh
. scripts/lib/services.sh
CYCLES=${CYCLES:-100000} DURATION=${DURATION:-540} WARMUP=${WARMUP:-2000}
MODE=${MODE:-steady} WAKE_RATE=${WAKE_RATE:-400} GUARD_INTERVAL=${GUARD_INTERVAL:-50ms}
REPOSITORIES=${REPOSITORIES:-30000} EVENT_RETENTION=${EVENT_RETENTION:-0}

services_init worker_memory
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

start_with_port "$dir/registry.port" /usr/bin/python3 test/simulator/registry_simulator.py \
    --port-file "$dir/registry.port" --pre-import-seconds 0.05 --import-seconds 0.05 >/dev/null
registry=http://127.0.0.1:$(cat "$dir/registry.port")

cluster_start "$dir/pg" -c shared_preload_libraries=registry_migration \
    -c registry_migration.database=postgres -c registry_migration.registry_url="$registry" \
    -c registry_migration.enqueue_interval=10ms -c registry_migration.guard_interval="$GUARD_INTERVAL"

secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
(umask 077 && echo "$secret" > "$dir/notification-secret")
start_with_port "$dir/receiver.port" scripts/notification_receiver.py \
    --secret-file "$dir/notification-secret" --port-file "$dir/receiver.port" --log "$dir/receiver.log"
curl -sf -XPOST "$registry/_sim/config" -d "{\"notify_url\": \"http://127.0.0.1:$(cat "$dir/receiver.port")/notify\", \"notify_secret\": \"$secret\"}" >/dev/null

n=0
[ "$MODE" = steady ] && n=$REPOSITORIES
# The registry's repositories, with the scripted failures.
/usr/bin/python3 - "$registry" "$n" <<'PY'
import json, sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
repos = []
for i in range(1, n + 1):
    repo = {"path": f"bench/g{i % 100}/repo-{i}"}
    if i % 10 == 0:
        repo["pre_import_outcomes"] = ["failed", "complete"]
    if i % 25 == 0:
        repo["import_outcomes"] = ["failed", "complete"]
    repos.append(repo)
repos.append({"path": "bench/noop", "status": "import_complete"})
req = urllib.request.Request(url + "/_sim/repositories", method="POST",
                             data=json.dumps({"repositories": repos}).encode())
urllib.request.urlopen(req).read()
PY
q <<SQL
CREATE EXTENSION registry_migration;
INSERT INTO registry_migration.repositories (path, created_at)
SELECT 'bench/g' || (i % 100) || '/repo-' || i, '2022-01-01'::timestamptz + i * interval '1 s'
  FROM generate_series(1, $n) AS i;
-- The target of the no-change notifications that only wake the worker.
INSERT INTO registry_migration.repositories (path, state, import_done_at)
VALUES ('bench/noop', 'import_done', now());
UPDATE registry_migration.settings
   SET enabled = true, capacity = 4, max_tags_count = 0, max_step_duration = '0',
       event_retention = '$EVENT_RETENTION';
VACUUM ANALYZE registry_migration.repositories;
ANALYZE registry_migration.denied_namespaces;
-- The worker started before the extension existed; wake it now.
SELECT pg_reload_conf() \gset
SQL
worker_pid=
for _ in $(seq 100); do
    worker_pid=$(q -c 'SELECT pid FROM registry_migration.worker_status WHERE last_enqueue_at IS NOT NULL')
    [ -n "$worker_pid" ] && break
    sleep 0.1
done
[ -n "$worker_pid" ] || { echo "worker_memory: the worker runs no cycle" >&2; exit 1; }

if (( WAKE_RATE > 0 )); then
    /usr/bin/python3 - "$WAKE_RATE" <<'PY' &
import subprocess, sys, time
rate = float(sys.argv[1])
psql = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"],
                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
next_at = time.monotonic()
while psql.poll() is None:
    psql.stdin.write("SELECT registry_migration.handle_notification('bench/noop', 'import_complete');\n")
    psql.stdin.flush()
    next_at += 1 / rate
    time.sleep(max(0, next_at - time.monotonic()))
PY
    service_pids+=($!)
fi

log=$dir/pg/server.log
cycles() { grep -c "\[$worker_pid\] LOG:  registry_migration $1 cycle" "$log" || true; }
# VmRSS RssAnon RssFile RssShmem, in kB.
rss() { awk '/^(VmRSS|RssAnon|RssFile|RssShmem):/ { printf "%s ", $2 }' "/proc/$worker_pid/status"; }
# The worker's memory-context grand total, logged by pg_log_backend_memory_contexts().
contexts() {
    local before after
    before=$(grep -c 'Grand total' "$log" || true)
    q -c "SELECT pg_log_backend_memory_contexts($worker_pid)" >/dev/null
    for _ in $(seq 50); do
        after=$(grep -c 'Grand total' "$log" || true)
        (( after > before )) && break
        sleep 0.1
    done
    # "Grand total: N bytes in B blocks; F free (C chunks); U used" -> "N U"
    grep "\[$worker_pid\] LOG:  Grand total" "$log" | tail -1 \
        | sed 's/.*Grand total: \([0-9]*\) bytes.*; \([0-9]*\) used.*/\1 \2/'
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }
report() {   # label cycles rss...
    local label=$1 c=$2 g=$3; shift 3
    printf '  %-12s %6ss  enqueue cycles %7d  guard cycles %6d  VmRSS %6d kB  RssAnon %6d kB  RssFile %6d kB  RssShmem %6d kB\n' \
        "$label" "$(since "$t0")" "$c" "$g" "$@"
}

echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
echo "worker pid $worker_pid; mode $MODE; enqueue_interval 10ms, guard_interval $GUARD_INTERVAL; wake rate $WAKE_RATE/s; event_retention '$EVENT_RETENTION'"
echo "stops at $CYCLES enqueue cycles or after $DURATION s; warm-up $WARMUP cycles"
t0=$(now)
read -r -a rss_start <<<"$(rss)"
report start "$(cycles enqueuer)" "$(cycles guard)" "${rss_start[@]}"
while (( $(cycles enqueuer) < WARMUP )); do
    sleep 0.5
    (( $(since "$t0") > DURATION )) && { echo "worker_memory: warm-up not reached" >&2; exit 1; }
done
c_warm=$(cycles enqueuer)
read -r -a rss_warm <<<"$(rss)"
report warmed-up "$c_warm" "$(cycles guard)" "${rss_warm[@]}"
t_warm=$(now)
ctx_warm=$(contexts)

next_report=30
while :; do
    sleep 1
    [ -e "/proc/$worker_pid" ] || { echo "worker_memory: worker $worker_pid is gone" >&2; break; }
    c=$(cycles enqueuer)
    elapsed=$(since "$t0")
    (( c >= CYCLES || elapsed >= DURATION )) && break
    if (( elapsed >= next_report )); then
        read -r -a r <<<"$(rss)"
        report "" "$c" "$(cycles guard)" "${r[@]}"
        next_report=$(( elapsed + 30 ))
    fi
done
c_end=$(cycles enqueuer)
g_end=$(cycles guard)
read -r -a rss_end <<<"$(rss)"
report end "$c_end" "$g_end" "${rss_end[@]}"
ctx_end=$(contexts)
run_s=$(since "$t_warm")

echo "result:"
echo "  enqueue cycles run: $c_end ($(( c_end - c_warm )) after warm-up, in $run_s s: $(( (c_end - c_warm) / (run_s > 0 ? run_s : 1) ))/s); guard cycles: $g_end"
awk -v s="${rss_start[*]}" -v w="${rss_warm[*]}" -v e="${rss_end[*]}" \
    -v cw="$ctx_warm" -v ce="$ctx_end" -v n="$(( c_end - c_warm ))" -v target="$CYCLES" -v total="$c_end" 'BEGIN {
    split(s, S, " "); split(w, W, " "); split(e, E, " ")
    printf "  VmRSS:   start %d kB, after warm-up %d kB, end %d kB: %+d kB after warm-up\n", S[1], W[1], E[1], E[1] - W[1]
    printf "           of which RssAnon %+d kB, RssFile %+d kB, RssShmem %+d kB (RssShmem: pages of shared memory the\n", E[2] - W[2], E[3] - W[3], E[4] - W[4]
    printf "           worker has touched, bounded by shared_buffers; not memory the worker allocates)\n"
    printf "  private memory (RssAnon): start %d kB, after warm-up %d kB, end %d kB: growth after warm-up %+d kB (goal < 2048 kB)\n", S[2], W[2], E[2], E[2] - W[2]
    if (split(cw, w2, " ") == 2 && split(ce, e2, " ") == 2)
        printf "  memory contexts (pg_log_backend_memory_contexts): after warm-up %d bytes (%d used), end %d bytes (%d used): %+d bytes (%+d used)\n", w2[1], w2[2], e2[1], e2[2], e2[1] - w2[1], e2[2] - w2[2]
    if (total < target && n > 0)
        printf "  EXTRAPOLATED, not measured (only %d of %d cycles ran): at the growth per cycle seen after warm-up, %d cycles would grow RssAnon by %+.0f kB\n", total, target, target, (E[2] - W[2]) / n * target
}'
echo "  worker pid at the end: $(q -c 'SELECT pid FROM registry_migration.worker_status') (was $worker_pid)"
q -c "SELECT '  events in the table at the end: ' || count(*) FROM registry_migration.events"
# Repository i fails its pre-import once if i % 10 = 0 and its import once if
# i % 25 = 0: more aborts than that are aborts of a step that did not fail.
q -c "SELECT '  repositories with more aborts than their scripted failures: ' || count(*)
             || coalesce(' (e.g. ' || min(path) || ')', '')
        FROM (SELECT path, retries_count,
                     (i % 10 = 0)::int + (i % 25 = 0)::int AS failures
                FROM registry_migration.repositories,
                     LATERAL (SELECT split_part(path, 'repo-', 2)::int AS i) x
               WHERE path LIKE 'bench/g%') r
       WHERE retries_count > failures"
q -c "SELECT '  repositories: ' || string_agg(state || ' ' || n, ', ' ORDER BY state)
        FROM (SELECT state::text, count(*) AS n FROM registry_migration.repositories GROUP BY 1) s"
/usr/bin/python3 - "$registry" <<'PY'
import json, sys, urllib.request
state = json.load(urllib.request.urlopen(sys.argv[1] + "/_sim/state?repositories=0"))
print("  registry requests by kind and answer:", json.dumps(state["requests"], sort_keys=True))
PY
errors=$(grep -cE 'ERROR|FATAL|PANIC|terminated by signal' "$log" || true)
warnings=$(grep -c 'WARNING' "$log" || true)
echo "  server log: $errors ERROR/FATAL/PANIC/crash lines, $warnings WARNING lines"
[ "$errors" = 0 ] || grep -E 'ERROR|FATAL|PANIC|terminated by signal' "$log" | sort | uniq -c | sort -rn | head -10
[ "$warnings" = 0 ] || grep 'WARNING' "$log" | sed 's/^.*WARNING/WARNING/' | sort | uniq -c | sort -rn | head -10
