--
-- decision: retry_decision(), the C function, through SQL: every state
-- against every status the registry reports, plus NULL, 'error', an
-- unknown string and wrong case; the retry limit; argument errors; and its
-- catalog properties (IMMUTABLE, PARALLEL SAFE, not STRICT).
--
\set SHOW_CONTEXT never
SET search_path = registry_migration, public;

-- Catalog: signature, IMMUTABLE ('i'), PARALLEL SAFE ('s'), not STRICT,
-- C language.
SELECT p.oid::regprocedure AS function, pg_get_function_arguments(p.oid) AS arguments,
       p.prorettype::regtype AS returns, p.provolatile, p.proparallel, p.proisstrict, l.lanname
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid = 'registry_migration.retry_decision'::regproc;

-- The registry statuses to try: the nine the registry reports, then NULL,
-- 'error', an unknown string, and the same words with another case or spacing
-- (compared exactly, so they are unknown).
CREATE TEMP TABLE statuses (n int, status text);
INSERT INTO statuses VALUES
 (1, 'native'), (2, 'pre_import_in_progress'), (3, 'pre_import_complete'),
 (4, 'pre_import_failed'), (5, 'pre_import_canceled'), (6, 'import_in_progress'),
 (7, 'import_complete'), (8, 'import_failed'), (9, 'import_canceled'),
 (10, NULL), (11, 'error'), (12, 'bogus'), (13, 'NATIVE'), (14, 'Import_complete'),
 (15, 'import_complete '), (16, ''), (17, 'import_cancelled');

-- The whole table below the limit (retries_count 1, max_retries 3): one
-- row per status, one column per state (pg_temp.spec below states the rules).
SELECT coalesce(s.status, '(NULL)') AS status,
       retry_decision('default', s.status, 1, 3) AS "default",
       retry_decision('pre_importing', s.status, 1, 3) AS pre_importing,
       retry_decision('pre_import_done', s.status, 1, 3) AS pre_import_done,
       retry_decision('importing', s.status, 1, 3) AS importing,
       retry_decision('import_done', s.status, 1, 3) AS import_done,
       retry_decision('import_aborted', s.status, 1, 3) AS import_aborted,
       retry_decision('import_skipped', s.status, 1, 3) AS import_skipped
  FROM statuses s ORDER BY s.n;

-- The same table at the limit (retries_count = max_retries = 3): only the
-- import_aborted column changes (rows 11 and 12 answer skip); in-process
-- states still abort (row 13 has no retry condition).
SELECT coalesce(s.status, '(NULL)') AS status,
       retry_decision('default', s.status, 3, 3) AS "default",
       retry_decision('pre_importing', s.status, 3, 3) AS pre_importing,
       retry_decision('pre_import_done', s.status, 3, 3) AS pre_import_done,
       retry_decision('importing', s.status, 3, 3) AS importing,
       retry_decision('import_done', s.status, 3, 3) AS import_done,
       retry_decision('import_aborted', s.status, 3, 3) AS import_aborted,
       retry_decision('import_skipped', s.status, 3, 3) AS import_skipped
  FROM statuses s ORDER BY s.n;

-- The decision table written again, independently, in SQL (the first
-- matching rule wins); the C function must agree with it on every
-- state x status x (retries_count, max_retries) below.
CREATE FUNCTION pg_temp.spec(st migration_state, rs text, rc int, mr int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE
    WHEN st IN ('import_done', 'import_skipped') THEN 'none'                           -- 1
    WHEN rs IS NULL OR rs NOT IN ('native', 'pre_import_in_progress', 'pre_import_complete',
            'pre_import_failed', 'pre_import_canceled', 'import_in_progress',
            'import_complete', 'import_failed', 'import_canceled') THEN 'unknown'      -- 2
    WHEN rs = 'native' THEN 'finish_import_native'                                     -- 3
    WHEN rs = 'pre_import_in_progress' AND st = 'pre_importing' THEN 'none'            -- 4
    WHEN rs = 'pre_import_in_progress' THEN 'mark_pre_importing'                       -- 5
    WHEN rs = 'import_in_progress' AND st = 'importing' THEN 'none'                    -- 6
    WHEN rs = 'import_in_progress' THEN 'mark_importing'                               -- 7
    WHEN rs = 'import_complete' THEN 'finish_import'                                   -- 8
    WHEN rs = 'pre_import_complete'
         AND st IN ('pre_importing', 'pre_import_done', 'import_aborted') THEN 'start_import' -- 9
    WHEN rs = 'pre_import_complete' THEN 'none'                                        -- 10
    WHEN st = 'import_aborted' AND rs IN ('pre_import_failed', 'pre_import_canceled')
         THEN CASE WHEN rc < mr THEN 'retry_pre_import' ELSE 'skip' END                -- 11
    WHEN st = 'import_aborted' AND rs IN ('import_failed', 'import_canceled')
         THEN CASE WHEN rc < mr THEN 'retry_import' ELSE 'skip' END                    -- 12
    WHEN st IN ('pre_importing', 'pre_import_done', 'importing') THEN 'abort'          -- 13
    WHEN st = 'default' THEN 'none'                                                    -- 14
END $$;
SELECT count(*) AS combinations,
       count(*) FILTER (WHERE retry_decision(st, s.status, rc, mr)
                              IS NOT DISTINCT FROM pg_temp.spec(st, s.status, rc, mr)) AS agree
  FROM unnest(enum_range(NULL::migration_state)) AS st, statuses s,
       (VALUES (0, 0), (0, 1), (1, 1), (2, 1), (0, 3), (2, 3), (3, 3), (4, 3),
               (2147483646, 2147483647), (2147483647, 2147483647), (0, 2147483647),
               (2147483647, 0)) AS r(rc, mr);
-- (Any disagreement would be listed here.)
SELECT st AS state, s.status, rc, mr, retry_decision(st, s.status, rc, mr) AS c_says,
       pg_temp.spec(st, s.status, rc, mr) AS spec_says
  FROM unnest(enum_range(NULL::migration_state)) AS st, statuses s,
       (VALUES (0, 0), (1, 1), (2, 3), (3, 3), (2147483647, 2147483647)) AS r(rc, mr)
 WHERE retry_decision(st, s.status, rc, mr) IS DISTINCT FROM pg_temp.spec(st, s.status, rc, mr);

-- The retry limit for an aborted repository, in full: below it retry,
-- at it or above it skip; max_retries = 0 skips at once.
SELECT rc AS retries_count, mr AS max_retries,
       retry_decision('import_aborted', 'pre_import_failed', rc, mr) AS pre_import_failed,
       retry_decision('import_aborted', 'pre_import_canceled', rc, mr) AS pre_import_canceled,
       retry_decision('import_aborted', 'import_failed', rc, mr) AS import_failed,
       retry_decision('import_aborted', 'import_canceled', rc, mr) AS import_canceled
  FROM (VALUES (0, 0), (1, 0), (0, 1), (1, 1), (0, 3), (2, 3), (3, 3), (4, 3),
               (2147483646, 2147483647), (2147483647, 2147483647)) AS r(rc, mr);

-- Errors, checked first: NULL state, retries_count or max_retries -> 22004
-- (also for a final state, and before a negative value is looked at);
-- negative retries_count or max_retries -> 22023. A NULL status is not an
-- error (rows 1 and 2).
SELECT c AS call, regress.try('SELECT registry_migration.retry_decision' || c) AS result
  FROM unnest(ARRAY[
       '(NULL, ''native'', 0, 3)', '(''default'', ''native'', NULL, 3)',
       '(''default'', ''native'', 0, NULL)', '(''import_done'', ''native'', NULL, 3)',
       '(''import_done'', NULL, 0, NULL)', '(NULL, NULL, NULL, NULL)',
       '(NULL, ''native'', -1, 3)', '(''default'', ''native'', NULL, -1)',
       '(''default'', ''native'', -1, 3)', '(''default'', ''native'', 0, -1)',
       '(''import_done'', ''native'', -1, 3)', '(''import_aborted'', ''import_failed'', -2147483648, 3)',
       '(''import_aborted'', ''import_failed'', 0, -2147483648)',
       '(''default'', NULL, 0, 3)', '(''import_done'', NULL, 0, 3)']) AS c;
\set VERBOSITY default
SELECT retry_decision('importing', 'import_failed', -1, 3);
\echo :LAST_ERROR_SQLSTATE
SELECT retry_decision('importing', 'import_failed', 0, NULL);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse

-- IMMUTABLE: a call with constants is folded by the planner.
EXPLAIN (COSTS OFF, VERBOSE)
SELECT retry_decision('import_aborted', 'import_canceled', 1, 3);

-- Optional: it also runs in a parallel worker (PARALLEL SAFE) with the
-- same answers. The query uses no temporary object (those would keep it in
-- the leader); with force_parallel_mode the whole plan goes under a Gather.
SELECT md5(string_agg(coalesce(registry_migration.retry_decision(st, rs, rc, 3), '?'), ','
                      ORDER BY st, rs, rc)) AS serial
  FROM unnest(enum_range(NULL::registry_migration.migration_state)) AS st,
       unnest(ARRAY['native', 'pre_import_in_progress', 'pre_import_complete',
                    'pre_import_failed', 'pre_import_canceled', 'import_in_progress',
                    'import_complete', 'import_failed', 'import_canceled', 'bogus']) AS rs,
       generate_series(0, 4) AS rc \gset
SET force_parallel_mode = on;
-- The first line of the plan: the whole query is under a Gather.
CREATE FUNCTION pg_temp.plan_top(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        RETURN line;
    END LOOP;
END $$;
SELECT pg_temp.plan_top($q$
SELECT md5(string_agg(coalesce(registry_migration.retry_decision(st, rs, rc, 3), '?'), ','
                      ORDER BY st, rs, rc))
  FROM unnest(enum_range(NULL::registry_migration.migration_state)) AS st,
       unnest(ARRAY['native', 'pre_import_in_progress', 'pre_import_complete',
                    'pre_import_failed', 'pre_import_canceled', 'import_in_progress',
                    'import_complete', 'import_failed', 'import_canceled', 'bogus']) AS rs,
       generate_series(0, 4) AS rc $q$) AS plan_top;
SELECT md5(string_agg(coalesce(registry_migration.retry_decision(st, rs, rc, 3), '?'), ','
                      ORDER BY st, rs, rc)) = :'serial' AS same_answers_in_parallel
  FROM unnest(enum_range(NULL::registry_migration.migration_state)) AS st,
       unnest(ARRAY['native', 'pre_import_in_progress', 'pre_import_complete',
                    'pre_import_failed', 'pre_import_canceled', 'import_in_progress',
                    'import_complete', 'import_failed', 'import_canceled', 'bogus']) AS rs,
       generate_series(0, 4) AS rc;
RESET force_parallel_mode;
