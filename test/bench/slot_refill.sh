#!/usr/bin/env bash
# Benchmark (not a test): how fast the background worker reacts to a committed
# notification: the worker is woken when the transaction commits, so a freed
# slot is refilled without waiting for the next tick.
#
# A throw-away cluster preloads the library; its worker serves "postgres" with
# enqueue_interval = guard_interval = 1 h, so within the run only the wake on
# commit can make it send a request. Capacity 1, max_tags_count 0, many
# repositories in default. The registry simulator runs every step for an hour
# (nothing ends on its own) and sends no notifications: the script plays the
# registry and the application. Per round, for the one repository in process:
#
#   final-import request: the simulator's pre-import is ended (/_sim/finish),
#     then handle_notification(path, 'pre_import_complete') is committed; the
#     worker must send PUT ...?import_type=final for that repository;
#   slot refill: the simulator's import is ended, then
#     handle_notification(path, 'import_complete') is committed; the slot is
#     free and the worker must send PUT ...?import_type=pre for the next one.
#
# Latency = arrival time of that PUT in the simulator's request log (its
# time.time() when the request was read) - the commit time (same machine, same
# clock). The notification is one query string, BEGIN; handle_notification;
# clock_timestamp(); COMMIT; clock_timestamp(), so the commit lies between two
# readings taken in the server with no client round trip between them: the
# latency from the first is an upper bound (compared with the goals), from the
# second a lower bound. Before each round the script waits for the worker to
# be back in "waiting", so every sample starts from an idle worker.
# Goals (slot refill): p50 <= 5 ms, p99 <= 50 ms.
#
# Sanity lines at the end: a rolled-back notification, and a repository
# finished by a direct UPDATE (which wakes nobody), must not cause a request
# within 1 s; a no-change (duplicate) notification must wake the worker.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/cluster.sh
ROUNDS=${ROUNDS:-200}

dir=$(mktemp -d /tmp/registry_migration_bench.XXXXXX)
chmod 755 "$dir"
sim_pid=
cleanup() {
    set +e
    [ -n "$sim_pid" ] && { kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; }
    cluster_stop "$dir/pg"
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Every path exists on the old registry with 0 tags; steps last an hour.
/usr/bin/python3 test/simulator/registry_simulator.py --port-file "$dir/port" --auto-create \
    --pre-import-seconds 3600 --import-seconds 3600 >/dev/null &
sim_pid=$!
for _ in $(seq 50); do [ -s "$dir/port" ] && break; sleep 0.1; done
url=http://127.0.0.1:$(cat "$dir/port")

cluster_start "$dir/pg" -c shared_preload_libraries=registry_migration \
    -c registry_migration.database=postgres -c registry_migration.registry_url="$url" \
    -c registry_migration.enqueue_interval=1h -c registry_migration.guard_interval=1h
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION registry_migration;
INSERT INTO registry_migration.repositories (path, created_at)
SELECT 'bench/repo-' || lpad(i::text, 5, '0'), '2022-01-01'::timestamptz + i * interval '1 s'
  FROM generate_series(1, $ROUNDS + 20) AS i;
UPDATE registry_migration.settings SET enabled = true, capacity = 1, max_tags_count = 0;
-- The first start only (setup): the SQL enqueuer starts the oldest repository.
SELECT registry_migration.run_enqueuer() IS NOT NULL AS started \gset
-- The worker found no extension when it started and idles until woken; a
-- reload (SIGHUP) wakes it, it sees the extension and waits at capacity.
SELECT pg_reload_conf() \gset
SQL

/usr/bin/python3 - "$url" "$ROUNDS" <<'PY'
import json, signal, subprocess, sys, time, urllib.request

url, rounds = sys.argv[1], int(sys.argv[2])
load_before = " ".join(open("/proc/loadavg").read().split()[:3])


def sim(method, route, body=None):
    req = urllib.request.Request(url + route, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req) as answer:
        return json.load(answer)


class Psql:
    """One psql session; each call sends statements and reads n result lines."""

    def __init__(self):
        self.p = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  bufsize=1)

    def run(self, sql, lines=1):
        if not sql.rstrip().endswith(";"):
            sql += ";"
        self.p.stdin.write(sql + "\n")
        self.p.stdin.flush()
        signal.alarm(30)  # never hang on a statement that prints less than expected
        out = [self.p.stdout.readline() for _ in range(lines)]
        signal.alarm(0)
        if any(line == "" for line in out):
            sys.exit("psql ended: " + sql)
        return [line.rstrip("\n") for line in out]

    def value(self, sql):
        return self.run(sql)[0]


db = Psql()


def lit(s):
    return "'" + s.replace("'", "''") + "'"


def last_seq():
    entries = sim("GET", "/_sim/requests?since=0")
    return entries[-1]["seq"] if entries else 0


def in_process():
    return db.value("SELECT coalesce(string_agg(path || ' ' || state, ','), '') "
                    "FROM registry_migration.repositories "
                    "WHERE state IN ('pre_importing', 'pre_import_done', 'importing')")


def wait_until(sql, expected, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        got = db.value(sql)
        if got == expected:
            return
        if time.monotonic() > deadline:
            sys.exit(f"timeout waiting for {sql!r} = {expected!r} (got {got!r}); "
                     f"in process: {in_process()}")
        time.sleep(0.001)


def worker_idle():
    wait_until("SELECT activity FROM registry_migration.worker_status", "waiting")


def state_is(path, state):
    wait_until(f"SELECT state FROM registry_migration.repositories WHERE path = {lit(path)}", state)


def commit_notification(path, status, rollback=False):
    """Returns (t_before_commit, t_after_commit) in epoch seconds."""
    # One query string (statements joined by psql's \;), so no client round
    # trip separates the two clock readings from the COMMIT between them.
    end = "ROLLBACK" if rollback else "COMMIT"
    out = db.run("BEGIN \\; "
                 f"SELECT registry_migration.handle_notification({lit(path)}, {lit(status)}) \\; "
                 "SELECT extract(epoch FROM clock_timestamp()) \\; "
                 f"{end} \\; "
                 "SELECT extract(epoch FROM clock_timestamp())", 3)
    return float(out[1]), float(out[2])


def next_put(since, timeout):
    """First PUT the registry received after log entry `since`, or None."""
    time.sleep(0.003)
    deadline = time.monotonic() + timeout
    while True:
        for entry in sim("GET", f"/_sim/requests?since={since}"):
            if entry["method"] == "PUT":
                return entry
        if time.monotonic() > deadline:
            return None
        time.sleep(0.005)


def one(path, status, expect_repo, expect_type):
    since = last_seq()
    before, after = commit_notification(path, status)
    put = next_put(since, 5)
    if put is None:
        sys.exit(f"no request within 5 s after {status} for {path}; in process: {in_process()}")
    if (put["repository"], put["import_type"]) != (expect_repo, expect_type):
        sys.exit(f"unexpected request {put['repository']} {put['import_type']} after {status} "
                 f"for {path} (expected {expect_repo} {expect_type})")
    return (put["time"] - before) * 1000, (put["time"] - after) * 1000


count = int(db.value("SELECT count(*) FROM registry_migration.repositories"))
paths = db.run("SELECT path FROM registry_migration.repositories ORDER BY created_at, id", count)
worker_pid = db.value("SELECT pid FROM registry_migration.worker_status")
if not worker_pid:
    sys.exit("no background worker (worker_status is empty)")
state_is(paths[0], "pre_importing")

final_hi, final_lo, refill_hi, refill_lo, cycle_ms = [], [], [], [], []
for i in range(rounds):
    cur, nxt = paths[i], paths[i + 1]
    # Pre-import ends: the worker requests the final import of the same repository.
    worker_idle()
    sim("POST", "/_sim/finish", {"path": cur, "outcome": "complete"})
    hi, lo = one(cur, "pre_import_complete", cur, "final")
    final_hi.append(hi)
    final_lo.append(lo)
    state_is(cur, "importing")
    # Import ends: the slot is free and the worker starts the next repository.
    worker_idle()
    sim("POST", "/_sim/finish", {"path": cur, "outcome": "complete"})
    hi, lo = one(cur, "import_complete", nxt, "pre")
    refill_hi.append(hi)
    refill_lo.append(lo)
    state_is(nxt, "pre_importing")
    worker_idle()
    cycle_ms.append(float(db.value("SELECT last_enqueue_ms FROM registry_migration.worker_status")))


def pct(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, -(-p * len(s) // 100) - 1))]


def line(name, values):
    print(f"  {name:<27} p50 {pct(values, 50):6.2f}  p95 {pct(values, 95):6.2f}  "
          f"p99 {pct(values, 99):6.2f}  max {max(values):7.2f}  min {min(values):6.2f}")


print(f"load average before the run: {load_before}")
print(f"worker pid {worker_pid}; enqueue_interval = guard_interval = 1 h; capacity 1; "
      f"{rounds} rounds of each kind")
print("latency (ms) from the commit of a notification to the PUT's arrival at the registry;")
print("the commit lies between two clock_timestamp() readings: 'from before COMMIT' is an")
print("upper bound of the latency (compared with the goals), 'from after COMMIT' a lower one")
print("slot refill: import_complete committed -> PUT ?import_type=pre of the next repository")
line("from before COMMIT", refill_hi)
line("from after COMMIT", refill_lo)
print(f"  goal p50 <= 5 ms: {pct(refill_hi, 50):.2f} ms = {pct(refill_hi, 50) / 5:.2f}x the goal; "
      f"goal p99 <= 50 ms: {pct(refill_hi, 99):.2f} ms = {pct(refill_hi, 99) / 50:.2f}x the goal")
print("final import: pre_import_complete committed -> PUT ?import_type=final, same repository")
line("from before COMMIT", final_hi)
line("from after COMMIT", final_lo)
windows = [h - l for h, l in zip(refill_hi + final_hi, refill_lo + final_lo)]
print(f"  width of the commit window: median {pct(windows, 50):.3f} ms, max {max(windows):.3f} ms")
print(f"the worker's enqueue cycle that refilled the slot (last_enqueue_ms): median "
      f"{pct(cycle_ms, 50):.2f} ms, max {max(cycle_ms):.2f} ms")

# Sanity: nothing but a committed wake makes the worker send a request.
cur = paths[rounds]
sim("POST", "/_sim/finish", {"path": cur, "outcome": "complete"})
worker_idle()
since = last_seq()
commit_notification(cur, "import_complete", rollback=True)
put = next_put(since, 1.0)
print("sanity: rolled-back import_complete: "
      + ("no request within 1 s (expected)" if put is None else
         f"UNEXPECTED request {put['method']} {put['raw_path']}?{put['query']}"))
since = last_seq()
db.run("UPDATE registry_migration.repositories SET state = 'import_done', "
       f"import_done_at = clock_timestamp() WHERE path = {lit(cur)} RETURNING state;")
put = next_put(since, 1.0)
print("sanity: slot freed by a direct UPDATE (no wake): "
      + ("no request within 1 s (expected)" if put is None else
         f"UNEXPECTED request {put['method']} {put['raw_path']}?{put['query']}"))
worker_idle()
ms, _ = one(cur, "import_complete", paths[rounds + 1], "pre")
print(f"sanity: then a duplicate import_complete (no change) wakes the worker: "
      f"next pre-import requested {ms:.2f} ms after the commit (upper bound)")
requests = sim("GET", "/_sim/state?repositories=0")["requests"]
print("registry requests by kind and answer:", json.dumps(requests, sort_keys=True))
PY
errors=$(grep -cE 'ERROR|FATAL|PANIC|WARNING|terminated by signal' "$dir/pg/server.log" || true)
echo "server log: $errors ERROR/FATAL/PANIC/WARNING/crash lines"
[ "$errors" = 0 ] || grep -E 'ERROR|FATAL|PANIC|WARNING|terminated by signal' "$dir/pg/server.log" | head -20
