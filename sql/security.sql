--
-- security: what other roles create, and what is stored in the tables,
-- cannot turn the extension against the one who runs it.
--
\set SHOW_CONTEXT never
SET search_path = registry_migration, public;

-- The tests share one database: start from an empty migration.
DELETE FROM repositories;
DELETE FROM events;
INSERT INTO settings DEFAULT VALUES;
-- Nothing listens there: every registry request fails at once.
SET registry_migration.registry_url = 'http://127.0.0.1:1';
SET registry_migration.connect_timeout = 500;

--
-- 1. Planted objects. A role that may create objects in some schema plants
-- operators, functions and tables there whose names the extension's
-- statements use, each of which records that it ran and tries to make its
-- owner superuser. A superuser then runs every function of the extension
-- with a search_path that puts that schema first. None of them may run.
--
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS regress_rm_evil CASCADE;
DROP ROLE IF EXISTS regress_rm_attacker;
RESET client_min_messages;
CREATE ROLE regress_rm_attacker NOLOGIN;
CREATE SCHEMA regress_rm_evil AUTHORIZATION regress_rm_attacker;
SET ROLE regress_rm_attacker;
CREATE TABLE regress_rm_evil.calls (what text);
GRANT ALL ON regress_rm_evil.calls TO PUBLIC;
CREATE FUNCTION regress_rm_evil.caught(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO regress_rm_evil.calls VALUES (what);
    BEGIN
        ALTER ROLE regress_rm_attacker SUPERUSER;
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
END $$;
CREATE FUNCTION regress_rm_evil.state_eq(registry_migration.migration_state, registry_migration.migration_state)
    RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM regress_rm_evil.caught('= on migration_state');
    RETURN $1::text = $2::text;
END $$;
CREATE OPERATOR regress_rm_evil.= (LEFTARG = registry_migration.migration_state,
    RIGHTARG = registry_migration.migration_state, FUNCTION = regress_rm_evil.state_eq);
CREATE FUNCTION regress_rm_evil.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM regress_rm_evil.caught('= on text');
    RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR regress_rm_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_rm_evil.text_eq);
CREATE FUNCTION regress_rm_evil.bigint_eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM regress_rm_evil.caught('= on bigint');
    RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR regress_rm_evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = regress_rm_evil.bigint_eq);
CREATE FUNCTION regress_rm_evil.ts_lt(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM regress_rm_evil.caught('< on timestamptz');
    RETURN $1 OPERATOR(pg_catalog.<) $2;
END $$;
CREATE OPERATOR regress_rm_evil.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = regress_rm_evil.ts_lt);
CREATE FUNCTION regress_rm_evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    PERFORM regress_rm_evil.caught('clock_timestamp()');
    RETURN pg_catalog.clock_timestamp();
END $$;
CREATE FUNCTION regress_rm_evil.split_part(text, text, integer) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM regress_rm_evil.caught('split_part()');
    RETURN pg_catalog.split_part($1, $2, $3);
END $$;
CREATE TABLE regress_rm_evil.repositories (id bigint, path text);
CREATE TABLE regress_rm_evil.settings (enabled boolean);
CREATE TABLE regress_rm_evil.events (id bigint);
RESET ROLE;

-- Repositories in every state a function below looks at; the migration is
-- on, so the cycles select work (their requests then fail: no registry).
UPDATE settings SET enabled = true, capacity = 5, max_step_duration = '0';
INSERT INTO repositories (path, state, pre_import_started_at, created_at)
VALUES ('sec/stale', 'pre_importing', now() - interval '1 hour', now() - interval '2 days');
INSERT INTO repositories (path, created_at) VALUES ('sec/new', now() - interval '1 day');
INSERT INTO repositories (path, state, pre_import_started_at, import_started_at)
VALUES ('sec/importing', 'importing', now() - interval '1 hour', now() - interval '1 hour');
INSERT INTO repositories (path, state, aborted_at, retries_count, aborted_in_state)
VALUES ('sec/aborted', 'import_aborted', now() - interval '1 hour', 1, 'importing');
INSERT INTO repositories (path, state, pre_import_started_at)
VALUES ('sec/notified', 'pre_importing', now());
INSERT INTO denied_namespaces VALUES ('denied');
INSERT INTO events (repository_id, path, old_state, new_state, cause, event, at)
VALUES (0, 'sec/old', 'default', 'import_skipped', 'admin', 'skip', now() - interval '40 days');

SET search_path = regress_rm_evil, pg_catalog, registry_migration, public;
SELECT regress.try($$SELECT registry_migration.run_guard()->>'ran'$$) AS run_guard;
SELECT regress.try($$SELECT registry_migration.run_enqueuer()->>'ran'$$) AS run_enqueuer;
-- The procedures cannot carry SET search_path (they commit): they pin it
-- themselves, in every transaction they run.
CALL registry_migration.guard();
CALL registry_migration.enqueue();
SELECT regress.try($$SELECT registry_migration.handle_notification('sec/notified', 'pre_import_complete')$$)
    AS handle_notification;
SELECT regress.try($$SELECT registry_migration.skip('sec/new', 'not_found')$$) AS skip;
SELECT regress.try($$SELECT registry_migration.reset('sec/new')$$) AS reset;
SELECT left(regress.try($$SELECT registry_migration.retry('sec/aborted')$$), 5) AS retry;
INSERT INTO registry_migration.repositories (path, state, pre_import_started_at, import_started_at)
VALUES ('sec/cancel', 'importing', now(), now());
SELECT left(regress.try($$SELECT registry_migration.cancel('sec/cancel')$$), 5) AS cancel;
SELECT regress.try($$SELECT registry_migration.purge_events(10)$$) AS purge_events;
SELECT left(regress.try($$SELECT registry_migration.registry_import_status('sec/new')$$), 5)
    AS registry_import_status;
-- (One row while a worker runs: on a server that preloads the library.)
SELECT count(*) <= 1 AS at_most_one_worker FROM registry_migration.worker_status;
SELECT count(*) AS state_counts FROM registry_migration.state_counts;
SELECT in_process FROM registry_migration.progress;
SET search_path = registry_migration, public;

-- Not one planted object ran, and the attacker is no superuser.
SELECT count(*) AS planted_calls FROM regress_rm_evil.calls;
SELECT rolsuper AS attacker_is_superuser FROM pg_roles WHERE rolname = 'regress_rm_attacker';
-- Every function that runs statements carries its own search_path; only
-- retry_decision and the two C trigger functions (no statement at all) go
-- without, and the two procedures, which pin it themselves (above).
SELECT p.oid::regprocedure AS function_without_pinned_search_path
  FROM pg_proc p
 WHERE p.pronamespace = 'registry_migration'::regnamespace
   AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, registry_migration, pg_temp']
                    OR p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)
 ORDER BY 1;
-- handle_notification runs with the extension owner's rights, and the trigger
-- that keeps the per-state counts (so that no writer needs a grant on them);
-- nothing else does.
SELECT p.oid::regprocedure AS security_definer
  FROM pg_proc p
 WHERE p.pronamespace = 'registry_migration'::regnamespace AND p.prosecdef
 ORDER BY 1;

DROP SCHEMA regress_rm_evil CASCADE;
DROP ROLE regress_rm_attacker;
DELETE FROM repositories;
DELETE FROM denied_namespaces;
INSERT INTO settings DEFAULT VALUES;

--
-- 2. Stored settings the table accepts never break a function: intervals
-- and rates far beyond any timestamp arithmetic act as a (very large) cap.
--
INSERT INTO repositories (path, state, pre_import_started_at)
VALUES ('sec/rate', 'pre_importing', now());
INSERT INTO repositories (path) VALUES ('sec/plain');
UPDATE settings SET event_retention = '10000 years', max_step_duration = '178000000 years',
                    enqueue_waiting_time = '178000000 years', pre_import_timeout = '178000000 years',
                    import_timeout = '178000000 years';
SELECT regress.try($$SELECT registry_migration.run_guard()->>'ran'$$) AS guard_long_intervals;
SELECT regress.try($$SELECT registry_migration.run_enqueuer()->>'ran'$$) AS enqueuer_long_intervals;
SELECT regress.try($$SELECT registry_migration.purge_events()$$) AS purge_long_retention;
INSERT INTO settings DEFAULT VALUES;
UPDATE settings SET pre_import_tags_rate = 1e400;
SELECT regress.try($$SELECT registry_migration.skip('sec/plain', 'not_found')$$) AS skip_huge_rate;
SELECT regress.try($$SELECT registry_migration.run_guard()->>'ran'$$) AS guard_huge_rate;
UPDATE settings SET pre_import_tags_rate = 1e-400;
SELECT regress.try($$SELECT registry_migration.reset('sec/plain')$$) AS reset_tiny_rate;
SELECT regress.try($$SELECT registry_migration.handle_notification('sec/rate', 'pre_import_complete')$$)
    AS notification_tiny_rate;
SELECT regress.try($$SELECT registry_migration.run_enqueuer()->>'ran'$$) AS enqueuer_tiny_rate;
INSERT INTO settings DEFAULT VALUES;
DELETE FROM repositories;

--
-- 3. The one-row tables: registry_state (a pending Retry-After) can be
-- changed, never removed, like settings.
--
UPDATE registry_state SET retry_after_until = now() + interval '1 minute';
\set VERBOSITY default
DELETE FROM registry_state;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE registry_state;
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SELECT count(*) AS rows, retry_after_until IS NOT NULL AS retry_after_kept
  FROM registry_state GROUP BY 2;
UPDATE registry_state SET retry_after_until = NULL;

--
-- 4. A retry counter written directly at the top of its type: the next abort
-- keeps it there (instead of overflowing) and skips the repository. (The
-- step began an hour ago: a failure reported for a step only seconds old
-- waits for the guard to confirm it.)
--
INSERT INTO repositories (path, state, pre_import_started_at, import_started_at, retries_count)
VALUES ('sec/counter', 'importing', now() - interval '1 hour', now() - interval '1 hour', 2147483647);
SELECT handle_notification('sec/counter', 'import_failed') AS after_failure;
SELECT state, retries_count, skipped_reason FROM repositories WHERE path = 'sec/counter';
DELETE FROM repositories;

--
-- 5. Every function that takes a repository path refuses one outside the
-- grammar with 22023 before looking at anything: no row is read, no request
-- is built ("..", empty and encoded segments, slashes, length).
--
SELECT split_part(split_part(f, '.', 2), '(', 1) AS function,
       CASE WHEN length(p) > 40 THEN left(p, 5) || '... (' || length(p) || ' bytes)' ELSE p END AS path,
       left(regress.try(format(f, p)), 5) AS sqlstate
  FROM unnest(ARRAY[
         'SELECT registry_migration.handle_notification(%L, ''import_complete'')',
         'SELECT registry_migration.cancel(%L)',
         'SELECT registry_migration.retry(%L)',
         'SELECT registry_migration.skip(%L, ''not_found'')',
         'SELECT registry_migration.reset(%L)',
         'SELECT registry_migration.registry_import_status(%L)',
         'SELECT registry_migration.registry_tags_count(%L)',
         'SELECT count(*) FROM registry_migration.registry_import_statuses(ARRAY[''ok/path'', %L])',
         'SELECT count(*) FROM registry_migration.registry_request(''cancel'', %L)']) AS f,
       unnest(ARRAY['../../v2/victim/manifests/latest', 'a//b', 'a/%2e%2e/b',
                    repeat('/', 3000), repeat('a', 256)]) AS p
 ORDER BY 1, 2;
-- The path is checked first: even with an unknown call name or status.
SELECT regress.try($$SELECT count(*) FROM registry_migration.registry_request('nonsense', 'a/../b')$$)
    AS request_bad_path_first;
SELECT regress.try($$SELECT registry_migration.handle_notification('a/../b', 'nonsense')$$)
    AS notification_bad_path_first;
-- NULL still comes first (22004), or NULL for the STRICT look-ups.
SELECT regress.try($$SELECT registry_migration.skip(NULL, 'not_found')$$) AS skip_null;
SELECT registry_migration.registry_import_status(NULL) IS NULL AS status_null;

--
-- 6. The trigger functions refuse to run outside a trigger.
--
CREATE FUNCTION public.regress_rm_direct_check_path() RETURNS void
    LANGUAGE c AS '$libdir/registry_migration', 'rm_repositories_check_path';
CREATE FUNCTION public.regress_rm_direct_settings_changed() RETURNS void
    LANGUAGE c AS '$libdir/registry_migration', 'rm_settings_changed';
SELECT regress.try('SELECT public.regress_rm_direct_check_path()') AS check_path_direct;
SELECT regress.try('SELECT public.regress_rm_direct_settings_changed()') AS settings_changed_direct;
DROP FUNCTION public.regress_rm_direct_check_path();
DROP FUNCTION public.regress_rm_direct_settings_changed();
