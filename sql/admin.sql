--
-- admin: the errors and signatures of skip() and reset():
-- NULL argument 22004, unknown path P0002 (exact match), event not allowed
-- 55000 naming the state; both return migration_state; skip keeps
-- aborted_at and aborted_in_state of an aborted repository.
--
\set SHOW_CONTEXT never
SET search_path = registry_migration, public;

-- The tests share one database: start from an empty migration.
DELETE FROM repositories;
DELETE FROM events;
INSERT INTO settings DEFAULT VALUES;

-- Signatures: argument names and types, result type migration_state, not
-- STRICT (a NULL argument must raise 22004, not return NULL), volatile.
SELECT p.oid::regprocedure AS function, pg_get_function_arguments(p.oid) AS arguments,
       p.prorettype::regtype AS returns, p.proisstrict, p.provolatile
  FROM pg_proc p
 WHERE p.pronamespace = 'registry_migration'::regnamespace AND p.proname IN ('skip', 'reset')
 ORDER BY p.proname;

INSERT INTO repositories (path) VALUES ('group/app'), ('group/other');

-- NULL arguments: 22004, checked before the path is looked up.
SELECT c AS call, regress.try('SELECT registry_migration.' || c) AS result
  FROM unnest(ARRAY[
       'skip(NULL, ''not_found'')', 'skip(''group/app'', NULL)', 'skip(NULL, NULL)',
       'skip(''no/such/repo'', NULL)', 'reset(NULL)']) AS c;

-- A valid path that names no repository: P0002; the match is exact (a
-- prefix names nothing). A path outside the grammar (another case, a
-- trailing or leading slash, spaces, a LIKE pattern, empty) is refused
-- first, with 22023, before any row is looked at.
SELECT p AS path,
       regress.try(format('SELECT registry_migration.skip(%L, ''not_found'')', p)) AS skip,
       regress.try(format('SELECT registry_migration.reset(%L)', p)) AS reset
  FROM unnest(ARRAY['no/such/repo', 'Group/app', 'GROUP/APP', 'group/app/', '/group/app',
                    ' group/app', 'group/app ', 'group', 'group/%', 'group/ap_', '']) AS p;
-- None of these changed anything.
SELECT path, state FROM repositories ORDER BY path;
SELECT count(*) AS events FROM events;

-- The full errors (message and detail).
\set VERBOSITY default
SELECT skip('Group/app', 'not_found');
\echo :LAST_ERROR_SQLSTATE
SELECT skip(NULL, 'not_found');
\echo :LAST_ERROR_SQLSTATE
SELECT reset('group/app');
\echo :LAST_ERROR_SQLSTATE

-- The result is a migration_state (the state afterwards).
SELECT pg_typeof(skip('group/app', 'not_in_plan')) AS skip_returns;
SELECT pg_typeof(reset('group/app')) AS reset_returns;
SELECT skip('group/app', 'not_in_plan') = 'import_skipped'::migration_state AS skip_result,
       reset('group/app') = 'default'::migration_state AS reset_result;

-- 55000 names the current state, also in a second call (skip is final).
SELECT skip('group/other', 'not_in_plan');
SELECT skip('group/other', 'too_many_tags');
\echo :LAST_ERROR_SQLSTATE
SELECT skipped_reason FROM repositories WHERE path = 'group/other';

-- Skipping an aborted repository keeps aborted_at and aborted_in_state
-- (leaving import_aborted clears them, except for import_skipped)
-- and retries_count.
INSERT INTO repositories (path, state, aborted_at, retries_count, aborted_in_state)
VALUES ('group/aborted', 'import_aborted', '2022-03-04 05:06:07+00', 2, 'pre_import_done');
SELECT skip('group/aborted', 'migration_forced_canceled');
SELECT state, skipped_reason, skipped_at IS NOT NULL AS skipped_at_set,
       aborted_at = '2022-03-04 05:06:07+00' AS aborted_at_kept, aborted_in_state, retries_count
  FROM repositories WHERE path = 'group/aborted';
-- reset then clears them all.
SELECT reset('group/aborted');
SELECT state, skipped_reason, skipped_at, aborted_at, aborted_in_state, retries_count
  FROM repositories WHERE path = 'group/aborted';

-- skip() works whatever the settings say (it never calls the registry):
-- disabled, no registry URL, capacity 0.
UPDATE settings SET enabled = false, capacity = 0;
SELECT skip('group/aborted', 'root_namespace_in_deny_list');
INSERT INTO settings DEFAULT VALUES;

-- A change made inside a transaction that is rolled back is not kept.
BEGIN;
SELECT reset('group/aborted');
ROLLBACK;
SELECT state FROM repositories WHERE path = 'group/aborted';
