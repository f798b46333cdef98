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

INSERT INTO settings DEFAULT VALUES;
