#!/usr/bin/python3
"""Chaos test and goodput benchmark of registry_migration (driven by test/chaos/run).

The same repositories and settings go through two migrations, each on a fresh
throw-away cluster with the extension's background worker and a fresh
registry simulator: first without faults (the baseline), then with faults
drawn from a seed. While the faulty run goes on, invariants are checked on a
schedule; at the end the final states, the event log and the registry are
compared. Prints the faults injected, the outcomes and the goodput ratio
(migration time with faults / without). Exits 1 if an invariant failed; never
fails on timing.

Notifications travel simulator -> this driver (which loses, delays and
duplicates some) -> handle_notification in one psql session, the way an
application with a job queue would deliver them: a delivery that meets a
restarting server is tried again, an ERROR answer is final.

Python 3.11 standard library only; run with /usr/bin/python3.
"""
import argparse
import collections
import hashlib
import heapq
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SIMULATOR = os.path.join(ROOT, "test", "simulator", "registry_simulator.py")
PG_BIN = "/usr/lib/postgresql/15/bin"
PYTHON = "/usr/bin/python3"
IN_PROCESS = ("pre_importing", "pre_import_done", "importing")

# Settings of both runs. The thresholds are short so that stuck steps are
# caught within seconds; the guard and the enqueuer run often. Steps last
# 0.3-1.2 s here, minutes on a real registry: the guard looks at a step
# after twice a typical step (5 minutes in production for steps of a few
# minutes), and a request is given up after a fraction of a step (10 s in
# production). --slow-thresholds uses the first, harsher choice (3 s, a
# guard every 2 s, 1 s per request: longer than a whole step).
CAPACITY = 50
MAX_RETRIES = 3
MAX_TAGS = 100
MAX_STEP = 1.5        # max_step_duration, s
PRE_TIMEOUT = 6       # pre_import_timeout, s
IMPORT_TIMEOUT = 6    # import_timeout, s
TAGS_RATE = 0.1       # pre_import_tags_rate, s per tag
GUARD_INTERVAL = 1    # s
ENQUEUE_INTERVAL = 1  # s
REQUEST_TIMEOUT_MS = 250
SLOW_THRESHOLDS = {"MAX_STEP": 3, "GUARD_INTERVAL": 2, "REQUEST_TIMEOUT_MS": 1000}
COOLDOWN = 5          # the registry's cool-down after a canceled pre-import, s
# Time the cycles may lose to the injected outages (a worker SIGKILL is a
# crash restart of the server, which starts the worker again at once; the
# server's immediate restart; the registry's restart) and to the requests of
# one guard cycle (status, cancel, status, each up to the request timeout).
# Generous on purpose: a bound, not a measure.
OUTAGE_SLACK = 20     # s


def log(message):
    print(message, flush=True)


def seeded(seed, *parts):
    """A random generator that depends only on the seed and the parts, so a
    decision does not depend on the order things happen in."""
    digest = hashlib.sha256(repr((seed,) + parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(method, url, body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read() or b"null")


# ---------------------------------------------------------------------------
# The plan: repositories, their outcomes and the faults, all from the seed
# ---------------------------------------------------------------------------

class Plan:
    def __init__(self, seed, count):
        self.seed = seed
        self.repositories = []     # simulator specs without faults
        self.native, self.missing, self.many_tags = set(), set(), set()
        self.outcomes = {}         # path -> (pre outcomes, import outcomes), faulty run only
        self.rules = []            # fault rules, faulty run only
        self.rule_kinds = []       # a name per rule, for the report
        rng = seeded(seed, "repositories")
        for i in range(count):
            path = f"chaos/g{i % 40}/repo-{i:05d}"
            spec = {"path": path, "tags": rng.randint(0, 20),
                    "pre_import_seconds": round(rng.uniform(0.2, 0.8), 3),
                    "import_seconds": round(rng.uniform(0.1, 0.4), 3)}
            draw = rng.random()
            if draw < 0.01:
                spec["native"] = True
                self.native.add(path)
            elif draw < 0.015:
                spec["exists"] = False
                self.missing.add(path)
            elif draw < 0.035:
                spec["tags"] = MAX_TAGS + 50
                self.many_tags.add(path)
            self.repositories.append(spec)
        self.paths = [r["path"] for r in self.repositories]
        rng = seeded(seed, "faults")
        for path in self.paths:
            if path in self.native | self.missing | self.many_tags:
                continue
            pre, final = [], []
            for outcomes, rates in ((pre, (0.04, 0.02, 0.02)), (final, (0.02, 0.01, 0.01))):
                draw = rng.random()
                for outcome, rate in zip(("failed", "canceled", "hang"), rates):
                    if draw < rate:
                        outcomes.extend([outcome, "complete"])
                        break
                    draw -= rate
            if pre or final:
                self.outcomes[path] = (pre, final)
            # Transport faults, each on a few per cent of the repositories.
            for name, rate, match, times, action in (
                    ("start pre-import: 503", 0.03, {"kind": "start", "import_type": "pre"}, 1,
                     {"type": "respond", "code": 503}),
                    ("start pre-import: timeout, request lost", 0.015,
                     {"kind": "start", "import_type": "pre"}, 1, {"type": "hang", "seconds": 5}),
                    ("start pre-import: timeout, start accepted", 0.01,
                     {"kind": "start", "import_type": "pre"}, 1, {"type": "delay", "ms": 1500}),
                    ("start final import: 500", 0.02, {"kind": "start", "import_type": "final"}, 1,
                     {"type": "respond", "code": 500}),
                    ("start final import: connection dropped", 0.01,
                     {"kind": "start", "import_type": "final"}, 1, {"type": "drop"}),
                    ("status: 503 twice", 0.03, {"kind": "status"}, 2,
                     {"type": "respond", "code": 503}),
                    ("status: timeout", 0.01, {"kind": "status"}, 1, {"type": "hang", "seconds": 5}),
                    ("cancel: 500", 0.02, {"kind": "cancel"}, 1, {"type": "respond", "code": 500}),
                    ("tag list: 502", 0.01, {"kind": "tags"}, 1, {"type": "respond", "code": 502})):
                if rng.random() < rate:
                    self.rules.append({"match": dict(match, path=path), "times": times,
                                       "action": action})
                    self.rule_kinds.append(name)

    def specs(self, faulty):
        if not faulty:
            return self.repositories
        out = []
        for spec in self.repositories:
            spec = dict(spec)
            pre, final = self.outcomes.get(spec["path"], ([], []))
            if pre:
                spec["pre_import_outcomes"] = pre
            if final:
                spec["import_outcomes"] = final
            out.append(spec)
        return out


# ---------------------------------------------------------------------------
# Processes: the cluster, the simulator
# ---------------------------------------------------------------------------

class Cluster:
    def __init__(self, directory, registry_url):
        self.dir = directory
        self.data = os.path.join(directory, "data")
        self.logfile = os.path.join(directory, "server.log")
        self.env = dict(os.environ, PGHOST=directory, PGPORT="5432", PGUSER="postgres",
                        PGDATABASE="postgres")
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        os.makedirs(directory, exist_ok=True)
        if os.getuid() == 0:
            shutil.chown(directory, "postgres")
        subprocess.run(self.as_owner + [f"{PG_BIN}/initdb", "-D", self.data, "-A", "trust",
                                        "-U", "postgres", "--no-sync"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        options = {
            "shared_preload_libraries": "registry_migration",
            "registry_migration.database": "postgres",
            "registry_migration.registry_url": registry_url,
            "registry_migration.guard_interval": f"{GUARD_INTERVAL}s",
            "registry_migration.enqueue_interval": f"{ENQUEUE_INTERVAL}s",
            "registry_migration.request_timeout": str(REQUEST_TIMEOUT_MS),
            "registry_migration.connect_timeout": "500",
            "registry_migration.log_level": "debug1",
            "fsync": "off", "listen_addresses": "", "unix_socket_directories": directory,
            "port": "5432", "restart_after_crash": "on",
        }
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            for name, value in options.items():
                conf.write(f"{name} = '{value}'\n")
        self.start()

    def pg_ctl(self, *args):
        return subprocess.run(self.as_owner + [f"{PG_BIN}/pg_ctl", "-D", self.data] + list(args),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self):
        if self.pg_ctl("-l", self.logfile, "-w", "-t", "60", "start").returncode != 0:
            sys.exit("chaos: the server did not start; see " + self.logfile)

    def stop(self, mode="fast"):
        self.pg_ctl("-m", mode, "-w", "stop")

    def psql(self, sql, check=True, timeout=60):
        result = subprocess.run(["psql", "-X", "-q", "-At", "-F", "|", "-v", "ON_ERROR_STOP=1"],
                                input=sql, env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(result.stderr.strip())
        return result

    def query(self, sql):
        return [line.split("|") for line in self.psql(sql).stdout.splitlines() if line]

    def worker_kills_logged(self):
        """How many times the server log says the worker died of SIGKILL."""
        with open(self.logfile, errors="replace") as f:
            return len(re.findall(r"registry_migration worker.*terminated by signal 9", f.read()))

    def worker_pid(self):
        try:
            rows = self.query("SELECT pid FROM pg_stat_activity "
                              "WHERE backend_type = 'registry_migration worker'")
        except Exception:
            return None
        return int(rows[0][0]) if rows else None


class Simulator:
    def __init__(self, directory, notify_url):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.notify_url = notify_url
        self.stderr = open(os.path.join(directory, "simulator.log"), "a")
        self.process = None
        self.start()

    def start(self, rules_first=None):
        self.process = subprocess.Popen(
            [PYTHON, SIMULATOR, "--port", str(self.port), "--notify-url", self.notify_url,
             "--cancel-cooldown", str(COOLDOWN), "--auto-create", "--shutdown-grace", "2"],
            stdout=subprocess.DEVNULL, stderr=self.stderr)
        for _ in range(1000):
            try:
                if rules_first:
                    self.control("POST", "faults", {"rules": rules_first})
                self.state()
                return
            except OSError:
                time.sleep(0.01)
        sys.exit("chaos: the registry simulator did not start")

    def control(self, method, route, body=None):
        return http_json(method, self.url + "/_sim/" + route, body)

    def state(self):
        return self.control("GET", "state?repositories=0")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------------------
# Notifications: the application side, with lost, late and duplicated ones
# ---------------------------------------------------------------------------

class Notifications:
    def __init__(self, cluster_env, logfile, seed, faulty):
        self.env = cluster_env
        self.seed, self.faulty = seed, faulty
        self.logfile = open(logfile, "a")
        self.heap, self.sequence = [], 0
        self.cond = threading.Condition()
        self.occurrences = collections.Counter()
        self.received_log = []
        self.counts = collections.Counter()
        self.errors = collections.Counter()      # (sqlstate, status, state before) -> count
        self.refused_evidence = []
        self.late_failures = []    # failure notifications handled over 1 s after the registry sent them
        self.psql = None
        self.stopping = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.deliverer = threading.Thread(target=self.deliver_loop, daemon=True)
        self.deliverer.start()

    def handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_PUT(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                try:
                    status = json.loads(body)["status"]
                except (ValueError, KeyError, TypeError):
                    return
                path = urllib.parse.unquote(self.path[len("/notify/"):])
                outer.received(path, status)

            def log_message(self, *args):
                pass
        return Handler

    def received(self, path, status):
        with self.cond:
            self.counts["received"] += 1
            self.received_log.append((time.time(), path, status))
            nth = self.occurrences[(path, status)]
            self.occurrences[(path, status)] += 1
            now = time.monotonic()
            if not self.faulty:
                self.schedule(now, path, status)
                return
            rng = seeded(self.seed, "notification", path, status, nth)
            draw = rng.random()
            if draw < 0.05:
                self.counts["lost"] += 1
            elif draw < 0.10:
                self.counts["late (2-8 s)"] += 1
                self.schedule(now + rng.uniform(2, 8), path, status)
            elif draw < 0.15:
                self.counts["duplicated (copy 0.5-5 s later)"] += 1
                self.schedule(now, path, status)
                self.schedule(now + rng.uniform(0.5, 5), path, status)
            else:
                self.schedule(now, path, status)

    def schedule(self, when, path, status):
        # Caller holds self.cond.
        self.sequence += 1
        heapq.heappush(self.heap, (when, self.sequence, path, status, time.time()))
        self.cond.notify()

    def pending(self):
        with self.cond:
            return len(self.heap)

    def session(self):
        if self.psql is None or self.psql.poll() is not None:
            self.psql = subprocess.Popen(
                ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=0", "-v", "VERBOSITY=sqlstate"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env=self.env, text=True, bufsize=1)
            self.psql.stdin.write("\\set VERBOSITY sqlstate\n")
        return self.psql

    def deliver(self, path, status, received_at):
        """One handle_notification call; True when the server answered it
        (a result or an ERROR), False when the session was lost."""
        literal = lambda v: "'" + v.replace("'", "''") + "'"
        self.sequence_marker = getattr(self, "sequence_marker", 0) + 1
        marker = f"@@done {self.sequence_marker}"
        statement = (f"SELECT state FROM registry_migration.repositories WHERE path = {literal(path)};\n"
                     f"SELECT registry_migration.handle_notification({literal(path)}, {literal(status)});\n"
                     f"\\echo {marker}\n")
        try:
            psql = self.session()
            psql.stdin.write(statement)
            psql.stdin.flush()
            lines = []
            while True:
                line = psql.stdout.readline()
                if not line:
                    return False
                line = line.rstrip("\n")
                if line == marker:
                    break
                lines.append(line)
        except (BrokenPipeError, OSError):
            self.psql = None
            return False
        if any("connection" in l and ("lost" in l or "terminat" in l or "closed" in l)
               or "FATAL:" in l for l in lines):
            return False
        before = lines[0] if lines else "?"
        error = next((l for l in lines if "ERROR:" in l), None)
        self.logfile.write(f"{time.time():.3f} {path} {status} {before} -> {' '.join(lines[1:])}\n")
        if time.time() - received_at > 1 and not error and status.endswith(("_failed", "_canceled")):
            self.late_failures.append((path, status, received_at, time.time()))
        if error:
            found = re.search(r"ERROR:\s+(\w+)", error)
            code = found.group(1) if found else error
            self.errors[(code, status, before)] += 1
            if len(self.refused_evidence) < 5:
                self.refused_evidence.append(f"{path} {status} (row was {before}): {error}")
        else:
            self.counts["delivered"] += 1
        return True

    def deliver_loop(self):
        while True:
            with self.cond:
                while not self.heap or self.heap[0][0] > time.monotonic():
                    if self.stopping and not self.heap:
                        return
                    self.cond.wait(None if not self.heap else self.heap[0][0] - time.monotonic())
                _, _, path, status, received_at = heapq.heappop(self.heap)
            for attempt in range(120):
                if self.deliver(path, status, received_at):
                    break
                if self.psql is not None:
                    self.psql.kill()
                self.psql = None
                self.counts["deliveries tried again (server restarting)"] += 1
                time.sleep(0.5)
            else:
                self.counts["undeliverable (server down 60 s)"] += 1

    def close(self):
        with self.cond:
            self.stopping = True
            self.cond.notify()
        self.deliverer.join(30)
        self.server.shutdown()
        if self.psql is not None:
            self.psql.stdin.close()
            self.psql.wait()


# ---------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------

def step_bound():
    """The oldest a step may be. The guard looks at a step once it is older
    than max_step_duration, at its next cycle; a step the registry confirms
    running is canceled when older than its threshold, one the registry
    cannot answer for is aborted when older than twice the threshold. The
    pre-import threshold is max(pre_import_timeout, tags x rate); a plan has
    at most MAX_TAGS + 50 tags (those are skipped before starting)."""
    threshold = max(PRE_TIMEOUT, IMPORT_TIMEOUT, 20 * TAGS_RATE)
    return max(MAX_STEP, 2 * threshold) + 2 * GUARD_INTERVAL + OUTAGE_SLACK


RUNNING_CHECKS = """
WITH s AS (SELECT * FROM registry_migration.settings),
r AS (SELECT * FROM registry_migration.repositories),
in_process AS (
    SELECT r.id, r.path, r.state,
           (SELECT e.cause FROM registry_migration.events e
             WHERE e.repository_id = r.id AND e.new_state IN ('pre_importing', 'pre_import_done', 'importing')
               AND (e.old_state IS NULL OR e.old_state NOT IN ('pre_importing', 'pre_import_done', 'importing'))
             ORDER BY e.id DESC LIMIT 1) AS entered_by
      FROM r WHERE r.state IN ('pre_importing', 'pre_import_done', 'importing'))
SELECT 'state invariant', path || ' ' || state || ' ' || row_to_json(r)::text FROM r
 WHERE NOT coalesce(CASE state
        WHEN 'pre_importing' THEN pre_import_started_at IS NOT NULL AND pre_import_done_at IS NULL
        WHEN 'pre_import_done' THEN pre_import_done_at IS NOT NULL
        WHEN 'importing' THEN import_started_at IS NOT NULL AND import_done_at IS NULL
        WHEN 'import_done' THEN import_done_at IS NOT NULL
        WHEN 'import_aborted' THEN aborted_at IS NOT NULL AND retries_count >= 1
        WHEN 'import_skipped' THEN skipped_reason IS NOT NULL AND skipped_at IS NOT NULL
        ELSE true END
     AND (aborted_in_state IS NULL OR aborted_in_state IN ('default', 'pre_importing', 'pre_import_done', 'importing'))
     AND retries_count >= 0 AND consecutive_429s >= 0, false)
UNION ALL
SELECT 'constraint not validated', conrelid::regclass || ' ' || conname FROM pg_constraint
 WHERE connamespace = 'registry_migration'::regnamespace AND NOT convalidated
UNION ALL
SELECT 'retries_count > max_retries', path || ' retries_count ' || retries_count || ' state ' || state
  FROM r, s WHERE retries_count > s.max_retries
UNION ALL
SELECT 'aborted at the retry limit (should be skipped)', path || ' retries_count ' || retries_count
  FROM r, s WHERE state = 'import_aborted' AND retries_count >= s.max_retries
UNION ALL
SELECT 'more in process than capacity allows',
       count(*) || ' in process, capacity ' || min(s.capacity) || ', entered without the enqueuer '
       || count(*) FILTER (WHERE entered_by <> 'enqueuer') || ': '
       || string_agg(path || ' ' || state || ' by ' || coalesce(entered_by, '?'), ', ')
  FROM in_process, s
HAVING count(*) > min(s.capacity) + count(*) FILTER (WHERE entered_by <> 'enqueuer')
UNION ALL
SELECT 'step older than its bound', path || ' ' || state || ' for ' ||
       round(extract(epoch FROM now() - coalesce(CASE state WHEN 'pre_importing' THEN pre_import_started_at
                                                            WHEN 'pre_import_done' THEN pre_import_done_at
                                                            ELSE import_started_at END, now())))::text || ' s'
  FROM r WHERE state IN ('pre_importing', 'pre_import_done', 'importing')
   AND now() - CASE state WHEN 'pre_importing' THEN pre_import_started_at
                          WHEN 'pre_import_done' THEN pre_import_done_at
                          ELSE import_started_at END > make_interval(secs => :bound)
UNION ALL
SELECT 'row count changed', count(*) || ' rows, expected ' || :rows FROM r HAVING count(*) <> :rows;
"""


class Checker:
    def __init__(self, quiet=False):
        self.failures = collections.OrderedDict()   # name -> [count, evidence list]
        self.quiet = quiet

    def fail(self, name, evidence):
        entry = self.failures.setdefault(name, [0, []])
        entry[0] += 1
        if len(entry[1]) < 5:
            entry[1].append(evidence)
            if not self.quiet:
                log(f"  INVARIANT FAILED: {name}: {evidence}")


# ---------------------------------------------------------------------------
# One migration
# ---------------------------------------------------------------------------

class Run:
    def __init__(self, plan, faulty, workdir, checker, window=None):
        self.plan, self.faulty, self.checker = plan, faulty, checker
        self.name = "with faults" if faulty else "without faults"
        self.dir = os.path.join(workdir, "faults" if faulty else "baseline")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.injected = collections.Counter()
        self.window = window
        self.simulator = self.cluster = self.notifications = None
        self.sim_totals = collections.Counter()   # simulator counters across its restarts
        self.fault_hits = collections.Counter()
        self.monitor_errors = 0
        self.checks_run = 0

    def setup(self):
        # The notification endpoint first (the simulator needs its URL), then
        # the simulator (the server needs its URL), then the server.
        self.notifications = None
        pgdir = os.path.join(self.dir, "pg")
        env = dict(os.environ, PGHOST=pgdir, PGPORT="5432", PGUSER="postgres", PGDATABASE="postgres")
        self.notifications = Notifications(env, os.path.join(self.dir, "notifications.log"),
                                           self.plan.seed, self.faulty)
        self.simulator = Simulator(self.dir, self.notifications.url)
        self.simulator.control("POST", "repositories", {"repositories": self.plan.specs(self.faulty)})
        if self.faulty and self.plan.rules:
            self.simulator.control("POST", "faults", {"rules": self.plan.rules})
        self.cluster = Cluster(pgdir, self.simulator.url)
        copy = "\n".join(p for p in self.plan.paths)
        self.cluster.psql(f"""
CREATE EXTENSION registry_migration;
CREATE TEMP TABLE p (path text);
COPY p FROM STDIN;
{copy}
\\.
INSERT INTO registry_migration.repositories (path, created_at)
SELECT path, '2022-01-01'::timestamptz + row_number() OVER () * interval '1 s' FROM p;
UPDATE registry_migration.settings
   SET capacity = {CAPACITY}, max_retries = {MAX_RETRIES}, max_tags_count = {MAX_TAGS},
       max_step_duration = '{MAX_STEP} s', pre_import_timeout = '{PRE_TIMEOUT} s',
       import_timeout = '{IMPORT_TIMEOUT} s', pre_import_tags_rate = {TAGS_RATE};
VACUUM ANALYZE registry_migration.repositories;
SELECT pg_reload_conf();
""")

    def enable(self):
        self.t0 = float(self.cluster.query(
            "SELECT extract(epoch FROM clock_timestamp()); "
            "UPDATE registry_migration.settings SET enabled = true; SELECT pg_reload_conf();")[0][0])
        self.started = time.monotonic()

    def finished(self):
        rows = self.cluster.query("SELECT count(*) FILTER (WHERE state NOT IN ('import_done', 'import_skipped')), "
                                  "count(*) FILTER (WHERE state IN ('pre_importing', 'pre_import_done', 'importing')) "
                                  "FROM registry_migration.repositories")
        return int(rows[0][0]), int(rows[0][1])

    # -- faults at moments of the run -------------------------------------------------

    def schedule(self):
        if not self.faulty:
            return []
        rng = seeded(self.plan.seed, "schedule")
        w = self.window
        events = [(rng.uniform(0.10, 0.85) * w, "worker SIGKILL") for _ in range(4)]
        events.append((rng.uniform(0.40, 0.60) * w, "server immediate restart"))
        events.append((rng.uniform(0.20, 0.35) * w, "registry restart"))
        return sorted(events)

    def kill_worker(self):
        pid = self.cluster.worker_pid()
        if pid is None:
            log("    (no worker to kill: it is restarting)")
            return False
        logged = self.cluster.worker_kills_logged()
        os.kill(pid, signal.SIGKILL)
        # The postmaster logs the kill when it reaps the worker. Wait for
        # that before anything else is injected: an immediate shutdown
        # right after the kill (two faults due in the same round) would
        # end the postmaster before it logs it.
        deadline = time.time() + 10
        while self.cluster.worker_kills_logged() == logged and time.time() < deadline:
            time.sleep(0.05)
        return True

    def restart_server(self):
        self.cluster.stop("immediate")
        time.sleep(0.5)
        self.cluster.start()
        return True

    def restart_registry(self):
        """Stop the simulator (like the real registry it cancels its running
        steps, notifying), start it again on the same port with the state it
        had: the real registry keeps its state in its own database, the
        simulator keeps it in memory, so the driver carries it over."""
        down = [{"match": {}, "action": {"type": "respond", "code": 503}}]
        faults = self.add_sim_totals()["faults"]
        # From here no request changes the registry (its steps still end);
        # the snapshot is then corrected by the notifications of the steps
        # that ended after it, including the cancels of the shutdown.
        self.simulator.control("POST", "faults", {"rules": down})
        mark = time.time()
        models = self.simulator.control("GET", "repositories")
        self.simulator.stop()
        time.sleep(1.0)   # down: connections refused
        ended = {path: status for at, path, status in list(self.notifications.received_log)
                 if at >= mark}
        # Until its state is back the new registry answers 503: the real one
        # does not accept starts before its database is reachable. (The
        # simulator cannot load repositories at startup, so a request in the
        # few milliseconds between its port opening and this rule would see
        # an empty registry.)
        self.simulator.start(rules_first=down)
        specs = []
        for m in models.values():
            spec = {"path": m["path"], "exists": m["exists"], "native": m["native"],
                    "tags": m.get("tags_count", len(m.get("tags", [])))}
            for field, step in (("pre_import_outcomes", "pre"), ("import_outcomes", "final")):
                script = m[field]
                used = m["attempts"].get(step, 0)
                if script:
                    spec[field] = script[min(used, len(script) - 1):]
            for field in ("pre_import_seconds", "import_seconds"):
                if m.get(field) is not None:
                    spec[field] = m[field]
            status = m["status"]
            if m.get("running_step"):
                status = ("pre_import" if m["running_step"] == "pre" else "import") + "_canceled"
            status = ended.get(m["path"], status)
            if status and status != "native":
                spec["status"] = status
            specs.append(spec)
        self.simulator.control("POST", "repositories", {"repositories": specs})
        rules = [{k: r[k] for k in ("match", "action")} | {"times": r.get("times")}
                 for r in faults if r.get("times") is None or r.get("times") > 0]
        self.simulator.control("POST", "faults", {"rules": rules})
        return True

    def add_sim_totals(self):
        try:
            state = self.simulator.state()
            faults = state["faults"]
        except OSError:
            return {"faults": []}
        for kind, codes in state.get("requests", {}).items():
            for code, n in (codes.items() if isinstance(codes, dict) else []):
                self.sim_totals[f"{kind} {code}"] += n
        for key in ("steps_ended", "steps_started"):
            for name, n in (state.get(key) or {}).items():
                self.sim_totals[f"{key} {name}"] += n
        for rule in faults:
            self.fault_hits[json.dumps(rule["match"], sort_keys=True) + json.dumps(rule["action"], sort_keys=True)] += rule.get("hits", 0)
        return state

    # -- the run -----------------------------------------------------------------------

    def check_invariants(self):
        sql = RUNNING_CHECKS.replace(":bound", str(step_bound())).replace(":rows", str(len(self.plan.paths)))
        try:
            rows = self.cluster.query(sql)
        except Exception:
            self.monitor_errors += 1
            return
        self.checks_run += 1
        for row in rows:
            self.checker.fail(row[0], "|".join(row[1:]))

    def go(self, timeout):
        self.setup()
        log(f"{self.name}: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
            f"({os.cpu_count()} cores), {len(self.plan.paths)} repositories, capacity {CAPACITY}, "
            f"worker pid {self.cluster.worker_pid()}, registry {self.simulator.url}")
        events = self.schedule()
        self.enable()
        next_print = 5
        unavailable_since = None
        while True:
            time.sleep(0.5)
            elapsed = time.monotonic() - self.started
            while events and events[0][0] <= elapsed:
                _, what = events.pop(0)
                log(f"  {elapsed:5.1f}s  injecting: {what}")
                done = {"worker SIGKILL": self.kill_worker,
                        "server immediate restart": self.restart_server,
                        "registry restart": self.restart_registry}[what]()
                if done:
                    self.injected[what] += 1
            if int(elapsed * 2) % 4 == 0:
                self.check_invariants()
            try:
                left, in_process = self.finished()
                unavailable_since = None
            except Exception:
                unavailable_since = unavailable_since or elapsed
                if elapsed - unavailable_since > 60:
                    self.checker.fail("server unavailable", f"no answer for 60 s at {elapsed:.0f} s")
                    return False
                continue
            if elapsed >= next_print or (left == 0 and not events):
                log(f"  {elapsed:5.1f}s  not finished {left:5d}  in process {in_process:3d}")
                next_print = elapsed - elapsed % 5 + 5
            if left == 0 and not events:
                break
            if left == 0 and events:
                log(f"  finished before: {', '.join(w for _, w in events)} (not injected)")
                break
            if elapsed > timeout:
                self.checker.fail("migration did not finish",
                                  f"{left} repositories not finished after {timeout:.0f} s: "
                                  + "; ".join("|".join(r) for r in self.cluster.query(
                                      "SELECT path, state, retries_count, pre_import_started_at, import_started_at "
                                      "FROM registry_migration.repositories WHERE state NOT IN "
                                      "('import_done', 'import_skipped') ORDER BY id LIMIT 5")))
                return False
        # Let late and duplicated notifications arrive before the final checks.
        if self.faulty:
            deadline = time.monotonic() + 15
            while self.notifications.pending() and time.monotonic() < deadline:
                time.sleep(0.2)
            self.check_invariants()
        self.wall = float(self.cluster.query(
            "SELECT extract(epoch FROM max(greatest(import_done_at, skipped_at))) "
            "FROM registry_migration.repositories")[0][0]) - self.t0
        return True


# ---------------------------------------------------------------------------
# Final checks and the report
# ---------------------------------------------------------------------------

def final_checks(run, checker, known):
    plan, c = run.plan, run.cluster
    rows = c.query("SELECT path, state, coalesce(skipped_reason::text, ''), retries_count, "
                   "coalesce(aborted_in_state::text, '') FROM registry_migration.repositories")
    by_path = {r[0]: r for r in rows}
    if len(rows) != len(plan.paths) or set(by_path) != set(plan.paths):
        checker.fail("repositories lost or added", f"{len(rows)} rows, expected {len(plan.paths)}")
    valid_skips = {"too_many_retries", "migration_canceled", "migration_canceled_by_registry"}
    registry = {path: m["status"] for path, m in run.simulator.control("GET", "repositories").items()}
    for path, state, reason, retries, _ in rows:
        if state not in ("import_done", "import_skipped"):
            checker.fail("repository not finished", f"{path} {state}")
        elif path in plan.native:
            if (state, reason) != ("import_done", "native_import"):
                checker.fail("native repository not recorded native_import", f"{path} {state} {reason}")
        elif path in plan.missing:
            if (state, reason) != ("import_done", "not_found"):
                checker.fail("missing repository not recorded not_found", f"{path} {state} {reason}")
        elif path in plan.many_tags:
            if (state, reason) != ("import_skipped", "too_many_tags"):
                checker.fail("repository with too many tags not skipped too_many_tags", f"{path} {state} {reason}")
        elif state == "import_done" and reason == "native_import":
            # A start whose answer was lost was accepted; a later start got 200.
            known["KNOWN LIMITATION: imported by the migration but recorded native_import "
                  "(a start lost with no start_unanswered event, e.g. the worker killed "
                  "mid-request; README: Known limitations)"].append(
                f"{path} (registry: {registry.get(path)})")
        elif state == "import_done" and reason:
            checker.fail("import_done with an invalid reason", f"{path} {reason}")
        elif state == "import_done" and registry.get(path) != "import_complete":
            checker.fail("import_done but the registry has not imported it",
                         f"{path}: registry status {registry.get(path)}")
        elif state == "import_skipped" and reason not in valid_skips:
            checker.fail("skipped with an invalid reason", f"{path} {reason}")
        elif state == "import_skipped" and not run.faulty:
            checker.fail("skipped without faults", f"{path} {reason}")
        if int(retries) > MAX_RETRIES:
            checker.fail("retries_count > max_retries", f"{path} {retries}")
    # The event log: a chain from default to the final state per repository.
    broken = c.query("""
SELECT path, reason FROM (
  SELECT r.path,
         CASE WHEN e.id IS NULL THEN 'no event'
              WHEN e.old_state IS DISTINCT FROM coalesce(lag(e.new_state) OVER w, 'default') THEN
                   'event ' || e.id || ' ' || e.event || ' from ' || e.old_state || ' but the previous event left '
                   || coalesce((lag(e.new_state) OVER w)::text, 'default (no earlier event)')
              WHEN lead(e.id) OVER w IS NULL AND e.new_state <> r.state THEN
                   'last event ' || e.id || ' leaves ' || e.new_state || ' but the row is ' || r.state
         END AS reason
    FROM registry_migration.repositories r
    LEFT JOIN registry_migration.events e ON e.repository_id = r.id
  WINDOW w AS (PARTITION BY r.id ORDER BY e.id)) x
 WHERE reason IS NOT NULL""")
    for path, reason in broken[:200]:
        checker.fail("event log inconsistent with the states", f"{path}: {reason}")
    skip_events = c.query("""
SELECT r.path FROM registry_migration.repositories r
 WHERE r.state = 'import_skipped' AND NOT EXISTS (
       SELECT FROM registry_migration.events e WHERE e.repository_id = r.id AND e.new_state = 'import_skipped')""")
    for (path,) in skip_events[:50]:
        checker.fail("skipped without a skip event", path)
    # The server log: only the crashes the driver caused.
    with open(c.logfile, errors="replace") as f:
        server_log = f.read()
    kills = c.worker_kills_logged()
    if kills != run.injected["worker SIGKILL"]:
        checker.fail("worker SIGKILLs in the server log differ from those sent",
                     f"{kills} in the log, {run.injected['worker SIGKILL']} sent")
    for line in server_log.splitlines():
        if "PANIC" in line or ("terminated by signal" in line and not
                               ("registry_migration worker" in line and "signal 9" in line)):
            checker.fail("unexpected crash in the server log", line.strip())
    # A late failure notification that aborted the retry started after the
    # registry sent it (issue 10 item 3; README: known limitations).
    late = run.notifications.late_failures
    if late:
        values = ", ".join(f"('{p}', '{st}', to_timestamp({r}), to_timestamp({d}))" for p, st, r, d in late)
        for path, status in c.query(f"""
SELECT l.path, l.status FROM (VALUES {values}) AS l(path, status, sent, handled)
 WHERE EXISTS (SELECT FROM registry_migration.events s WHERE s.path = l.path
                 AND s.event IN ('start_pre_import', 'start_import') AND s.at > l.sent AND s.at < l.handled)
   AND EXISTS (SELECT FROM registry_migration.events a WHERE a.path = l.path AND a.event = 'abort'
                 AND a.cause = 'notification' AND a.at >= l.handled - interval '1 s'
                 AND a.at <= l.handled + interval '1 s')"""):
            known["KNOWN LIMITATION: a late failure notification aborted the retry that followed "
                  "(the retry older than the 10 s a failure report is held for confirmation; "
                  "README: Known limitations)"].append(
                f"{path} {status}")
    for (sqlstate, status, before), n in run.notifications.errors.items():
        if sqlstate == "55000" and before == "default":
            known["KNOWN LIMITATION: completion notifications refused (55000) for a row still "
                  "default (a start lost with no start_unanswered event; README: Known "
                  "limitations)"].extend([status] * n)
        elif sqlstate == "55000" and before == "import_skipped" and status.endswith("_complete"):
            known["ALLOWED: completion notifications refused (55000) for a skipped row "
                  "(README: Notifications)"].extend([status] * n)
        else:
            checker.fail("handle_notification failed", f"{n} x {sqlstate} for {status} on a {before} row")


def selftest_checks(run):
    """Breaks the finished baseline on purpose and returns the checks that
    did not notice: a check that never fires proves nothing."""
    probe = Checker(quiet=True)
    run.checker = probe
    # The worker is stopped first: it would repair the broken rows (the guard
    # finishes a stale step the registry reports done) before the checks run.
    run.cluster.psql("ALTER SYSTEM SET registry_migration.worker_enabled = off; "
                     "SELECT pg_reload_conf();")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not run.cluster.query(
            "SELECT activity FROM registry_migration.worker_status")[0][0].startswith(
                "idle: registry_migration.worker_enabled is off"):
        time.sleep(0.1)
    run.cluster.psql("""
UPDATE registry_migration.settings SET capacity = 1;
UPDATE registry_migration.repositories
   SET state = 'pre_importing', pre_import_started_at = now() - interval '1 hour',
       pre_import_done_at = NULL, import_started_at = NULL, import_done_at = NULL
 WHERE id IN (1, 2, 3);
UPDATE registry_migration.repositories SET retries_count = 9 WHERE id = 4;
DELETE FROM registry_migration.repositories WHERE id = 5;
""")
    run.check_invariants()
    final_checks(run, probe, collections.defaultdict(list))
    expected = ("more in process than capacity allows", "step older than its bound",
                "retries_count > max_retries", "row count changed", "repository not finished",
                "event log inconsistent with the states", "repositories lost or added")
    return [name for name in expected if name not in probe.failures], len(expected)


def stop_run(run):
    for step in (lambda: run.simulator.stop(), lambda: run.notifications.close(),
                 lambda: run.cluster.stop("immediate")):
        try:
            step()
        except Exception:
            pass


def report(plan, baseline, faulty, known, checker):
    log("")
    log(f"== chaos: seed {plan.seed}, {len(plan.paths)} repositories, capacity {CAPACITY}, "
        f"max_retries {MAX_RETRIES}, step bound {step_bound():.0f} s")
    log("faults injected:")
    outcomes = collections.Counter()
    for pre, final in plan.outcomes.values():
        for step, script in (("pre-import", pre), ("final import", final)):
            if script:
                outcomes[f"{step} {script[0]} once"] += 1
    for name, n in sorted(outcomes.items()):
        log(f"  {name:55s} {n:5d} repositories (planned)")
    kinds = collections.Counter(plan.rule_kinds)
    hits = collections.Counter()
    for rule, name in zip(plan.rules, plan.rule_kinds):
        hits[name] += faulty.fault_hits.get(json.dumps(rule["match"], sort_keys=True)
                                            + json.dumps(rule["action"], sort_keys=True), 0)
    for name in sorted(kinds):
        log(f"  {name:55s} {kinds[name]:5d} rules, {hits[name]:5d} hits")
    for name in sorted(faulty.notifications.counts):
        if name not in ("received", "delivered"):
            log(f"  notifications {name:41s} {faulty.notifications.counts[name]:5d}")
    cooldown = sum(n for k, n in faulty.sim_totals.items() if k.startswith("start 429"))
    log(f"  {'start answered 429 (cool-down after a canceled pre-import)':55s} {cooldown:5d}")
    for name in ("worker SIGKILL", "server immediate restart", "registry restart"):
        log(f"  {name:55s} {faulty.injected[name]:5d}")
    ended = {k.split(" ", 1)[1]: n for k, n in faulty.sim_totals.items() if k.startswith("steps_ended")}
    log("  registry steps ended: " + ", ".join(f"{k} {n}" for k, n in sorted(ended.items())))
    log("outcomes (with faults):")
    for row in faulty.cluster.query("SELECT state, coalesce(skipped_reason::text, '-'), count(*), "
                                    "max(retries_count) FROM registry_migration.repositories "
                                    "GROUP BY 1, 2 ORDER BY 1, 2"):
        log(f"  {row[0]:15s} {row[1]:32s} {row[2]:>5s}  (max retries_count {row[3]})")
    log("retries (aborts) by cause and what the registry said:")
    for row in faulty.cluster.query("""
SELECT cause, old_state, coalesce(registry_status, 'http ' || http_status, left(detail, 40), '-'), count(*)
  FROM registry_migration.events WHERE event IN ('abort', 'retry_failed')
 GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3"""):
        log(f"  {row[0]:12s} from {row[1]:15s} {row[2]:42s} {row[3]:>5s}")
    n = faulty.notifications
    log(f"notifications: {n.counts['received']} sent by the registry, {n.counts['delivered']} handled, "
        f"{sum(n.errors.values())} refused")
    log(f"invariant checks while running: {faulty.checks_run} rounds"
        f" ({faulty.monitor_errors} skipped while the server was down)")
    for name, items in known.items():
        log(f"{name}: {len(items)} (not counted as a failure)")
        for item, n in collections.Counter(items).most_common(5):
            log(f"    {item}" + (f" ({n} times)" if n > 1 else ""))
    if baseline.wall and faulty.wall:
        log(f"migration time without faults: {baseline.wall:7.1f} s")
        log(f"migration time with faults:    {faulty.wall:7.1f} s")
        log(f"goodput ratio: {faulty.wall / baseline.wall:.2f} (goal <= 2.0; a figure, never a failure)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repositories", type=int, default=None,
                        help="how many repositories (default 2000, 300 with --check)")
    parser.add_argument("--check", action="store_true",
                        help="the short check of scripts/test: 300 repositories")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--slow-thresholds", action="store_true",
                        help="max_step_duration 3 s, guard every 2 s, request timeout 1 s")
    options = parser.parse_args()
    if options.slow_thresholds:
        globals().update(SLOW_THRESHOLDS)
    if options.repositories is None:
        options.repositories = 300 if options.check else 2000
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(1, 10**6)
    begun = time.monotonic()
    log(f"chaos: seed {seed} (repeat with --seed {seed}), {options.repositories} repositories, "
        f"max_step_duration {MAX_STEP} s, guard every {GUARD_INTERVAL} s, "
        f"request timeout {REQUEST_TIMEOUT_MS} ms")
    plan = Plan(seed, options.repositories)
    workdir = tempfile.mkdtemp(prefix="registry_migration_chaos.")
    os.chmod(workdir, 0o755)
    checker = Checker()
    known = collections.defaultdict(list)
    runs = []

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(130))
    try:
        baseline = Run(plan, False, workdir, checker)
        runs.append(baseline)
        ok = baseline.go(timeout=max(300, options.repositories))
        baseline.wall = baseline.wall if ok else None
        if ok:
            final_checks(baseline, checker, known)
        baseline.add_sim_totals()
        tests = {"without faults: invariants held": not checker.failures}
        if ok:
            missed, total = selftest_checks(baseline)
            for name in missed:
                log(f"FAILED: the check \"{name}\" did not notice a row broken on purpose")
            log(f"checks of the checks: {total - len(missed)} of {total} noticed a row broken on purpose")
            tests["the checks notice broken rows"] = not missed
        stop_run(baseline)
        failures_before = sum(n for n, _ in checker.failures.values())
        window = max(baseline.wall or 20, 20)
        faulty = Run(plan, True, workdir, checker, window=window)
        runs.append(faulty)
        ok = faulty.go(timeout=max(300, 15 * window))
        faulty.wall = faulty.wall if ok else None
        if ok:
            final_checks(faulty, checker, known)
        faulty.add_sim_totals()
        tests["with faults: invariants held"] = \
            sum(n for n, _ in checker.failures.values()) == failures_before
        report(plan, baseline, faulty, known, checker)
    finally:
        for run in runs:
            stop_run(run)
        if options.keep:
            log(f"chaos: work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    failures = sum(n for n, _ in checker.failures.values())
    for name, (n, evidence) in checker.failures.items():
        log(f"FAILED: {name}: {n} times; e.g. {evidence[0]}")
    for name, passed in tests.items():
        log(f"{'ok' if passed else 'FAILED'}: {name}")
    passed = sum(tests.values())
    log(f"chaos: {time.monotonic() - begun:.0f} s in all")
    log(f"chaos: {passed} passed, {len(tests) - passed} failed")
    return 0 if passed == len(tests) else 1


if __name__ == "__main__":
    sys.exit(main())
