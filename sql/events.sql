--
-- events: the event log. skip() and reset() write
-- one row each; rows outlive their repository; purge_events(n) removes only
-- rows older than settings.event_retention, at most n, oldest first.
--
\set SHOW_CONTEXT never
SET search_path = registry_migration, public;

-- The tests share one database: start from an empty migration.
DELETE FROM repositories;
DELETE FROM events;
INSERT INTO settings DEFAULT VALUES;

INSERT INTO repositories (path, state, aborted_at, retries_count, aborted_in_state)
VALUES ('ev/one', 'default', NULL, 0, NULL),
       ('ev/aborted', 'import_aborted', '2022-01-01 00:00+00', 1, 'importing');

-- skip: exactly one row, with old and new state, cause 'admin', the event
-- name, path and repository id, and at = the new skipped_at (one "now" per
-- change); no registry status, HTTP status or detail.
SELECT skip('ev/one', 'too_many_tags');
SELECT e.path, e.repository_id = r.id AS repository_id_ok, e.old_state, e.new_state,
       e.cause, e.event, e.registry_status, e.http_status, e.detail, e.at = r.skipped_at AS at_ok
  FROM events e JOIN repositories r ON r.path = e.path ORDER BY e.id;

-- reset: exactly one more row, at between the statement's start and end.
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS t;
SELECT reset('ev/one');
SELECT count(*) AS events_of_ev_one FROM events WHERE path = 'ev/one';
SELECT e.path, e.repository_id = r.id AS repository_id_ok, e.old_state, e.new_state,
       e.cause, e.event, e.registry_status, e.http_status, e.detail,
       e.at >= t0.t AND e.at <= clock_timestamp() AS at_ok
  FROM events e JOIN repositories r ON r.path = e.path, t0
 WHERE e.id = (SELECT max(id) FROM events);

-- Skipping an aborted repository: one row import_aborted -> import_skipped.
SELECT skip('ev/aborted', 'migration_canceled');
SELECT path, old_state, new_state, cause, event FROM events WHERE path = 'ev/aborted';

-- A refused call or an error writes nothing; a call in a transaction that
-- rolls back leaves no row either; direct SQL changes are not recorded
-- (only the extension's own changes are).
SELECT count(*) AS events_before FROM events;
SELECT regress.try($$SELECT registry_migration.reset('ev/one')$$) AS refused;
SELECT regress.try($$SELECT registry_migration.skip('ev/none', 'not_found')$$) AS unknown;
BEGIN;
SELECT skip('ev/one', 'not_found');
ROLLBACK;
UPDATE repositories SET state = 'import_done', import_done_at = now() WHERE path = 'ev/one';
UPDATE repositories SET state = 'default', import_done_at = NULL WHERE path = 'ev/one';
SELECT count(*) AS events_after FROM events;

-- Event rows survive deleting the repository (no foreign key).
DELETE FROM repositories WHERE path = 'ev/aborted';
SELECT path, old_state, new_state FROM events WHERE path = 'ev/aborted';

--
-- purge_events(max_rows): signature and default.
--
SELECT p.oid::regprocedure AS function, pg_get_function_arguments(p.oid) AS arguments,
       p.prorettype::regtype AS returns, p.proisstrict
  FROM pg_proc p WHERE p.oid = 'registry_migration.purge_events'::regproc;

-- Errors: 0 or negative -> 22023, NULL -> 22004.
SELECT c AS call, regress.try('SELECT registry_migration.purge_events(' || c || ')') AS result
  FROM unnest(ARRAY['0', '-1', '-2147483648', 'NULL']) AS c;
\set VERBOSITY default
SELECT purge_events(0);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse

-- A log with rows of known age: retention 1 day; eight rows older than
-- that (ages 2 to 9 days, inserted in shuffled order so that id order is not
-- age order) and three younger ones (1 hour, 23 hours, 23 h 59 min).
DELETE FROM events;
UPDATE settings SET event_retention = '1 day';
INSERT INTO events (repository_id, path, old_state, new_state, cause, event, at)
SELECT 1, 'purge/' || label, 'default', 'import_skipped', 'admin', 'skip', clock_timestamp() - age
  FROM (VALUES ('old-5d', interval '5 days'), ('new-1h', '1 hour'), ('old-2d', '2 days'),
               ('old-9d', '9 days'), ('old-3d', '3 days'), ('new-23h', '23 hours'),
               ('old-7d', '7 days'), ('old-4d', '4 days'), ('old-8d', '8 days'),
               ('new-23h59m', '23 hours 59 minutes'), ('old-6d', '6 days')) AS v(label, age);

-- At most n per call, oldest first, returns the count.
SELECT purge_events(3) AS removed;
SELECT path FROM events ORDER BY at;
SELECT purge_events(2) AS removed;
SELECT path FROM events ORDER BY at;
-- More than what is left: removes the rest of the old rows only.
SELECT purge_events(100) AS removed;
SELECT path FROM events ORDER BY at;
-- Nothing old left: 0, nothing removed.
SELECT purge_events(100) AS removed;
-- The default batch: 1 000 rows, what every cycle removes at its start.
SELECT pg_get_function_arguments('registry_migration.purge_events'::regproc) AS arguments;
SELECT purge_events() AS removed;
SELECT count(*) AS left FROM events;

-- The retention is read from settings at each call: shorter retention,
-- more rows are old.
UPDATE settings SET event_retention = '2 hours';
SELECT purge_events() AS removed;
SELECT path FROM events ORDER BY at;
-- Retention 0: everything older than now goes.
UPDATE settings SET event_retention = '0';
SELECT purge_events() AS removed;
SELECT count(*) AS left FROM events;

-- However long the log, the trim reads only the rows it removes: 20 000
-- rows, three of them old, and the statistics say so. (It could scan the
-- whole log whenever a row was old enough, depending on the log's size and
-- statistics: at nearly every cycle of a migration longer than its
-- retention.) The scans are counted within one transaction.
UPDATE settings SET event_retention = '1 day';
INSERT INTO events (repository_id, path, old_state, new_state, cause, event, at)
SELECT 1, 'purge/long-log', 'default', 'import_skipped', 'admin', 'skip',
       clock_timestamp() - CASE WHEN i <= 3 THEN interval '2 days' ELSE interval '1 hour' END
  FROM generate_series(1, 20000) AS i;
ANALYZE events;
BEGIN;
SELECT seq_scan AS scans_before FROM pg_stat_xact_user_tables WHERE relid = 'events'::regclass \gset
SELECT purge_events() AS removed;
SELECT seq_scan - :scans_before AS sequential_scans_of_the_log
  FROM pg_stat_xact_user_tables WHERE relid = 'events'::regclass;
COMMIT;
SELECT count(*) AS left, min(at) > clock_timestamp() - interval '1 day' AS none_old FROM events;
DELETE FROM events;

INSERT INTO settings DEFAULT VALUES;

--
-- Every event that writes a skip reason carries it (column skipped_reason),
-- so a repository's history explains itself after a reset cleared the
-- row's own reason; the abort before an automatic skip carries none.
--
DELETE FROM repositories;
DELETE FROM events;
INSERT INTO repositories (path, state, pre_import_started_at, import_started_at, retries_count)
VALUES ('why/skipped', 'default', NULL, NULL, 0),
       ('why/failed', 'importing', now() - interval '1 hour', now() - interval '1 hour', 2),
       ('why/canceled', 'pre_importing', now() - interval '1 hour', NULL, 2);
SELECT skip('why/skipped', 'root_namespace_in_deny_list');
SELECT reset('why/skipped');
SELECT handle_notification('why/failed', 'import_failed');
SELECT handle_notification('why/canceled', 'pre_import_canceled');
SELECT path, event, old_state, new_state, skipped_reason FROM events ORDER BY id;
SELECT path, state, skipped_reason FROM repositories ORDER BY path;

--
-- A failure notification for a step only seconds old may be about an
-- earlier attempt: it changes nothing yet, returns the state as it is, and
-- is recorded as failure_pending for the guard to confirm with the
-- registry. One for an older step aborts at once.
--
DELETE FROM repositories;
DELETE FROM events;
INSERT INTO repositories (path, state, pre_import_started_at, pre_import_done_at, import_started_at)
VALUES ('held/young', 'pre_importing', now(), NULL, NULL),
       ('held/young-done', 'pre_import_done', now() - interval '1 hour', now(), NULL),
       ('held/old', 'importing', now() - interval '1 hour', now() - interval '1 hour',
        now() - interval '1 minute');
SELECT handle_notification('held/young', 'pre_import_failed') AS young,
       handle_notification('held/young-done', 'pre_import_canceled') AS young_done,
       handle_notification('held/old', 'import_failed') AS old;
SELECT path, state, retries_count FROM repositories ORDER BY path;
SELECT path, cause, event, old_state, new_state, registry_status,
       detail LIKE 'reported % s after the step started:%' AS detail_ok
  FROM events ORDER BY id;
-- A duplicate is held again; a completion still applies at once.
SELECT handle_notification('held/young', 'pre_import_failed') AS duplicate,
       handle_notification('held/young', 'pre_import_complete') AS completion;
SELECT count(*) AS held_events FROM events WHERE path = 'held/young' AND event = 'failure_pending';
-- The held reports are found through their own index.
SELECT indexrelid::regclass AS index, pg_get_expr(indpred, indrelid) AS predicate
  FROM pg_index WHERE indexrelid = 'registry_migration.events_failure_pending'::regclass;

--
-- A completion notification for a default repository is refused, unless
-- one of our starts lost its answer since the repository last changed
-- state: then it is applied as if the start had been accepted. A failure
-- then changes nothing. (The cycles write start_unanswered; written by hand
-- here.)
--
DELETE FROM repositories;
DELETE FROM events;
INSERT INTO repositories (path) VALUES ('lost/pre'), ('lost/import'), ('lost/failed'), ('lost/none'),
       ('lost/before-reset');
INSERT INTO events (repository_id, path, old_state, new_state, cause, event)
SELECT id, path, 'default', 'default', 'enqueuer', 'start_unanswered' FROM repositories
 WHERE path <> 'lost/none';
SELECT skip('lost/before-reset', 'not_in_plan');
SELECT reset('lost/before-reset');
SELECT p AS path, s AS status,
       regress.try(format($$SELECT registry_migration.handle_notification(%L, %L)$$, p, s)) AS result
  FROM (VALUES ('lost/pre', 'pre_import_complete'), ('lost/import', 'import_complete'),
               ('lost/failed', 'pre_import_failed'), ('lost/none', 'pre_import_complete'),
               ('lost/before-reset', 'pre_import_complete')) AS v(p, s);
SELECT path, state, pre_import_started_at IS NOT NULL AS pre_import_started,
       pre_import_done_at IS NOT NULL AS pre_import_done, skipped_reason
  FROM repositories ORDER BY path;
SELECT path, cause, event, old_state, new_state FROM events
 WHERE event NOT IN ('start_unanswered', 'skip', 'reset') ORDER BY id;

DELETE FROM repositories;
DELETE FROM events;
