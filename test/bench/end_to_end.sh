#!/usr/bin/env bash
# Benchmark (not a test): a whole migration driven by the background worker.
# N repositories (10 000), capacity 50, every pre-import and import takes
# STEP_MS (100 ms) in the registry simulator, which sends its notifications by
# HTTP PUT to scripts/notification_receiver.py, which calls
# handle_notification through one psql session, as in a deployment. The
# worker (library preloaded, default intervals: enqueue 10 s, guard 60 s) runs
# every cycle: after setup no cycle is called from SQL, so the slots are
# refilled only by the wake on commit. The clock starts at enabling the
# migration (UPDATE settings SET enabled = true, then pg_reload_conf() so the
# worker looks at once instead of at its next tick) and stops at the last
# import_done_at. Prints progress every 5 s, the time, the ideal
# ceil(N / capacity) x 2 x STEP_MS (10 000 / 50 x 200 ms = 40 s), the ratio
# (goal <= 1.10) and where the time per repository went.
# Overrides: N, CAPACITY, STEP_MS, MAX_TAGS_COUNT (0: no tag request; the
# ideal counts only the steps), TIMEOUT (seconds, default 600),
# ANALYZE_DENY_LIST=1 (ANALYZE the empty registry_migration.denied_namespaces
# before the run, to compare with a deny list the planner knows nothing of),
# EVENT_RETENTION (settings.event_retention; default: the extension's 30 days;
# '0' keeps the event log nearly empty, to compare), RUNS (default 1: the
# whole run that many times in a row, each on a fresh cluster, simulator and
# receiver, then the spread of the ratio and of the worker's CPU per start).
# Each run also prints the worker's CPU time per start request (its backend's
# utime + stime from /proc over the run, divided by the start requests the
# simulator received; goal <= 0.5 ms) and the load average before and after:
# the ratio depends on what else the machine runs, the CPU per start much
# less.
set -euo pipefail
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-1}
if (( RUNS > 1 )); then
    runs_out=$(mktemp)
    trap 'rm -f "$runs_out"' EXIT
    for i in $(seq "$RUNS"); do
        echo "=== run $i of $RUNS"
        RUNS=1 "$self" | tee -a "$runs_out"
    done
    # min / median / max of one figure over the runs
    spread() {
        grep '^figures:' "$runs_out" | sed -E "s/.*$1 ([0-9.]+).*/\1/" | sort -n |
            awk '{ v[NR] = $1 } END {
                m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                printf "%s / %s / %s", v[1], m, v[NR] }'
    }
    echo "=== spread over $RUNS runs (min / median / max)"
    echo "  ratio: $(spread ratio) (goal <= 1.10 in every run)"
    echo "  worker CPU per start (ms): $(spread 'worker CPU per start') (goal <= 0.5)"
    echo "  load average (1 min) before each run: $(grep '^figures:' "$runs_out" | sed -E 's/.*load ([0-9.]+) .*/\1/' | paste -sd' ')"
    echo "  machine busy outside the run's four processes, each run: $(grep '^figures:' "$runs_out" | sed -E 's/.* ([0-9]+%)$/\1/' | paste -sd' ')"
    exit 0
fi
. scripts/lib/cluster.sh
. scripts/lib/services.sh
N=${N:-10000} CAPACITY=${CAPACITY:-50} STEP_MS=${STEP_MS:-100}
MAX_TAGS_COUNT=${MAX_TAGS_COUNT:-0} TIMEOUT=${TIMEOUT:-600} ANALYZE_DENY_LIST=${ANALYZE_DENY_LIST:-0}
EVENT_RETENTION=${EVENT_RETENTION:-}

services_init end_to_end
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

step_s=$(awk -v ms="$STEP_MS" 'BEGIN { printf "%.3f", ms / 1000 }')
# The simulator first (its port goes into the server's settings); it learns
# the receiver's URL once the receiver runs.
start_with_port "$dir/registry.port" /usr/bin/python3 test/simulator/registry_simulator.py \
    --port-file "$dir/registry.port" --auto-create \
    --pre-import-seconds "$step_s" --import-seconds "$step_s" >/dev/null
registry=http://127.0.0.1:$(cat "$dir/registry.port")

cluster_start "$dir/pg" -c shared_preload_libraries=registry_migration \
    -c registry_migration.database=postgres -c registry_migration.registry_url="$registry"
q <<SQL
CREATE EXTENSION registry_migration;
INSERT INTO registry_migration.repositories (path, created_at)
SELECT 'bench/g' || (i % 100) || '/repo-' || i, '2022-01-01'::timestamptz + i * interval '1 s'
  FROM generate_series(1, $N) AS i;
UPDATE registry_migration.settings SET capacity = $CAPACITY, max_tags_count = $MAX_TAGS_COUNT;
VACUUM ANALYZE registry_migration.repositories;
SELECT '$EVENT_RETENTION' <> '' AS set_retention \gset
\if :set_retention
UPDATE registry_migration.settings SET event_retention = '$EVENT_RETENTION';
\endif
SELECT $ANALYZE_DENY_LIST = 1 AS analyze_deny_list \gset
\if :analyze_deny_list
ANALYZE registry_migration.denied_namespaces;
\endif
-- The worker started before the extension existed and idles until its next
-- tick; a reload wakes it now (it then finds the migration disabled).
SELECT pg_reload_conf() \gset
SQL
for _ in $(seq 100); do
    [ "$(q -c 'SELECT activity FROM registry_migration.worker_status')" = waiting ] && break
    sleep 0.1
done
worker_pid=$(q -c 'SELECT pid FROM registry_migration.worker_status')
[ -n "$worker_pid" ] || { echo "end_to_end: no background worker" >&2; exit 1; }

secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
(umask 077 && echo "$secret" > "$dir/notification-secret")
start_with_port "$dir/receiver.port" scripts/notification_receiver.py \
    --secret-file "$dir/notification-secret" --port-file "$dir/receiver.port" --log "$dir/receiver.log"
curl -sf -XPOST "$registry/_sim/config" -d "{\"notify_url\": \"http://127.0.0.1:$(cat "$dir/receiver.port")/notify\", \"notify_secret\": \"$secret\"}" >/dev/null

# CPU time (clock ticks) of a process, and of the whole machine (busy, total).
cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
machine_cpu() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
cpu_procs=("$worker_pid" "${service_pids[0]}" "${service_pids[1]}")
cpu_names=("worker" "simulator" "receiver")
cpu_start=(); for p in "${cpu_procs[@]}"; do cpu_start+=("$(cpu_of "$p")"); done
read -r busy_start total_start <<<"$(machine_cpu)"

ideal_ms=$(( (N + CAPACITY - 1) / CAPACITY * 2 * STEP_MS ))
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average before the run: $load_before ($(nproc) cores)"
echo "$N repositories, capacity $CAPACITY, pre-import and import $STEP_MS ms each, max_tags_count $MAX_TAGS_COUNT, denied_namespaces analyzed: $([ "$ANALYZE_DENY_LIST" = 1 ] && echo yes || echo no), event_retention $(q -c 'SELECT event_retention FROM registry_migration.settings')"
echo "worker pid $worker_pid (enqueue_interval $(q -c 'SHOW registry_migration.enqueue_interval'), guard_interval $(q -c 'SHOW registry_migration.guard_interval')); notifications: simulator -> receiver -> handle_notification"
t0=$(q <<'SQL'
SELECT extract(epoch FROM clock_timestamp());
UPDATE registry_migration.settings SET enabled = true;
SELECT pg_reload_conf() \gset
SQL
)
started=$(date +%s.%N)
# Looks once a second (so the CPU figures end within a second of the last
# import), prints every 5 s and at the end.
next_print=5
while :; do
    sleep 1
    IFS='|' read -r done_ in_process pre_done default_ aborted skipped <<<"$(q -c "
        SELECT count(*) FILTER (WHERE state = 'import_done'),
               count(*) FILTER (WHERE state IN ('pre_importing', 'pre_import_done', 'importing')),
               count(*) FILTER (WHERE state = 'pre_import_done'),
               count(*) FILTER (WHERE state = 'default'),
               count(*) FILTER (WHERE state = 'import_aborted'),
               count(*) FILTER (WHERE state = 'import_skipped')
          FROM registry_migration.repositories")"
    elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
    finished=$(( done_ + skipped >= N ))
    if (( elapsed >= next_print || finished )); then
        printf '  %4ss  import_done %6d  in process %3d (pre_import_done %3d)  default %6d  aborted %d  skipped %d\n' \
            "$elapsed" "$done_" "$in_process" "$pre_done" "$default_" "$aborted" "$skipped"
        next_print=$(( elapsed - elapsed % 5 + 5 ))
    fi
    (( finished )) && break
    if (( elapsed > TIMEOUT )); then
        echo "end_to_end: not finished after ${TIMEOUT} s; worker_status:" >&2
        q -x -c 'SELECT * FROM registry_migration.worker_status' >&2
        exit 1
    fi
done

read -r busy_end total_end <<<"$(machine_cpu)"
worker_ticks=$(( $(cpu_of "$worker_pid") - cpu_start[0] ))
cpu_line="  CPU over the run (s):"
own_ticks=0   # of the processes named here, to tell what else the machine ran
for i in "${!cpu_procs[@]}"; do
    ticks=$(( $(cpu_of "${cpu_procs[$i]}") - cpu_start[i] ))
    own_ticks=$(( own_ticks + ticks ))
    cpu_line+=" ${cpu_names[$i]} $(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }'),"
done
# The receiver opens its psql session at the first notification, within the run.
receiver_backend=$(q -c "SELECT pid FROM pg_stat_activity
                         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
for p in $receiver_backend; do
    own_ticks=$(( own_ticks + $(cpu_of "$p") ))
    cpu_line+=" receiver's backend $(awk -v t="$(cpu_of "$p")" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }'),"
done
cpu_line+=" machine busy $(awk -v b=$((busy_end - busy_start)) -v t=$((total_end - total_start)) 'BEGIN { printf "%.0f%%", 100 * b / t }') of $(nproc) cores"
others=$(awk -v b=$((busy_end - busy_start)) -v o="$own_ticks" -v t=$((total_end - total_start)) 'BEGIN { printf "%.0f%%", 100 * (b - o) / t }')
cpu_line+=" ($others outside these four processes: the server's other processes and whatever else runs)"

IFS='|' read -r wall_ms busy_ms pre_ms final_req_ms imp_ms <<<"$(q -c "
    SELECT round(extract(epoch FROM max(import_done_at)) * 1000 - $t0 * 1000),
           round(avg(extract(epoch FROM import_done_at - pre_import_started_at)) * 1000, 1),
           round(avg(extract(epoch FROM pre_import_done_at - pre_import_started_at)) * 1000, 1),
           round(avg(extract(epoch FROM import_started_at - pre_import_done_at)) * 1000, 1),
           round(avg(extract(epoch FROM import_done_at - import_started_at)) * 1000, 1)
      FROM registry_migration.repositories WHERE state = 'import_done'")"
# Every start request the simulator received (pre-imports and final imports).
starts=$(/usr/bin/python3 -c '
import json, sys, urllib.request
state = json.load(urllib.request.urlopen(sys.argv[1] + "/_sim/state?repositories=0"))
print(sum(state["requests"].get("start", {}).values()))' "$registry")
cpu_per_start=$(awk -v t="$worker_ticks" -v hz="$(getconf CLK_TCK)" -v n="$starts" 'BEGIN { printf "%.3f", t / hz * 1000 / n }')
echo "result:"
echo "  wall time from enabling to the last import_done: ${wall_ms} ms"
echo "  ideal ceil($N / $CAPACITY) x 2 x $STEP_MS ms: ${ideal_ms} ms"
awk -v w="$wall_ms" -v i="$ideal_ms" -v n="$N" -v c="$CAPACITY" -v b="$busy_ms" 'BEGIN {
    printf "  ratio: %.3f (goal <= 1.10)\n", w / i
    printf "  throughput: %.1f repositories/s (ideal %.1f)\n", n / (w / 1000), n / (i / 1000)
    printf "  slot occupancy: %.1f%% (sum of pre_import_started_at..import_done_at over capacity x wall time)\n", 100 * n * b / (c * w)
}'
echo "  per repository (means, ms; steps last $STEP_MS ms in the simulator):"
echo "    pre_import_started_at -> pre_import_done_at (pre-import + notification): $pre_ms"
echo "    pre_import_done_at -> import_started_at (worker requests the final import): $final_req_ms"
echo "    import_started_at -> import_done_at (import + notification): $imp_ms"
echo "    pre_import_started_at -> import_done_at (slot held): $busy_ms"
awk -v w="$wall_ms" -v n="$N" -v c="$CAPACITY" -v b="$busy_ms" 'BEGIN {
    printf "    slot empty between an import_done and the next start: %.1f\n", (c * w - n * b) / n }'
# Back-to-back requests of one worker cycle: the gap between consecutive
# starts recorded by the worker, when it is under 20 ms.
q -c "SELECT '  worker, consecutive starts under 20 ms apart (ms): median '
             || round((percentile_cont(0.5) WITHIN GROUP (ORDER BY gap))::numeric, 2) || ', p90 '
             || round((percentile_cont(0.9) WITHIN GROUP (ORDER BY gap))::numeric, 2) || ' over '
             || count(*) || ' pairs; median in the first fifth of the run '
             || round((percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) FILTER (WHERE fifth = 1))::numeric, 2)
             || ', in the last fifth '
             || round((percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) FILTER (WHERE fifth = 5))::numeric, 2)
        FROM (SELECT extract(epoch FROM t - lag(t) OVER (ORDER BY t)) * 1000 AS gap,
                     ntile(5) OVER (ORDER BY t) AS fifth
                FROM (SELECT pre_import_started_at AS t FROM registry_migration.repositories
                      UNION ALL SELECT import_started_at FROM registry_migration.repositories) s) g
       WHERE gap < 20"
echo "$cpu_line"
echo "  worker CPU per start: $cpu_per_start ms ($(awk -v t="$worker_ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }') s over $starts start requests; goal <= 0.5 ms)"
q -c "SELECT '  states: ' || string_agg(state || ' ' || n, ', ' ORDER BY state)
        FROM (SELECT state::text, count(*) AS n FROM registry_migration.repositories GROUP BY 1) s"
q -c "SELECT '  events: ' || count(*) || ' (' || count(*) FILTER (WHERE cause = 'notification')
             || ' from notifications, ' || count(*) FILTER (WHERE cause = 'enqueuer') || ' from the enqueuer, '
             || count(*) FILTER (WHERE cause = 'guard') || ' from the guard)'
        FROM registry_migration.events"
# Every cycle (worker or SQL) starts with purge_events(1000); how long it
# takes now, with every event of the run in the table and none old enough.
q -c "SELECT '  one purge_events(1000) with ' || (SELECT count(*) FROM registry_migration.events)
             || ' events, none older than event_retention: '
             || round(extract(epoch FROM clock_timestamp() - t0) * 1000, 2) || ' ms (removed '
             || removed || ')'
        FROM (SELECT clock_timestamp() AS t0) a, LATERAL (SELECT registry_migration.purge_events(1000) AS removed) b"
/usr/bin/python3 - "$registry" <<'PY'
import json, sys, urllib.request
state = json.load(urllib.request.urlopen(sys.argv[1] + "/_sim/state?repositories=0"))
print("  registry requests by kind and answer:", json.dumps(state["requests"], sort_keys=True))
print("  notifications:", json.dumps(state["notifications"], sort_keys=True))
PY
cycles=$(grep -c "\[$worker_pid\] LOG:  registry_migration enqueuer cycle" "$dir/pg/server.log" || true)
guards=$(grep -c "\[$worker_pid\] LOG:  registry_migration guard cycle" "$dir/pg/server.log" || true)
echo "  worker cycles (server log): $cycles enqueue, $guards guard"
receiver_errors=$(grep -c ERROR "$dir/receiver.log" || true)
echo "  handle_notification errors in the receiver's session: $receiver_errors"
[ "$receiver_errors" = 0 ] || grep ERROR "$dir/receiver.log" | sort | uniq -c | sort -rn | head -5
errors=$(grep -cE 'ERROR|FATAL|PANIC|WARNING|terminated by signal' "$dir/pg/server.log" || true)
echo "  server log: $errors ERROR/FATAL/PANIC/WARNING/crash lines"
[ "$errors" = 0 ] || grep -E 'ERROR|FATAL|PANIC|WARNING|terminated by signal' "$dir/pg/server.log" | head -20
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "  load average after the run: $load_after"
ratio=$(awk -v w="$wall_ms" -v i="$ideal_ms" 'BEGIN { printf "%.3f", w / i }')
echo "figures: ratio $ratio, worker CPU per start $cpu_per_start ms, load $load_before -> $load_after, busy outside the run's four processes $others"
