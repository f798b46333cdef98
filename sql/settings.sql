--
-- settings: the one-row table of settings (defaults, CHECKs) and its
-- guarantees: an INSERT (as a restore does) replaces the row's values,
-- DELETE and TRUNCATE are refused with 55000, a second row is impossible
-- even with triggers disabled.
--
\set SHOW_CONTEXT never
SET search_path = registry_migration, public;

-- Back to the defaults, in case an earlier test changed them.
UPDATE settings SET (enabled, capacity, max_retries, start_max_retries, max_step_duration,
                     pre_import_timeout, import_timeout, pre_import_tags_rate, max_tags_count,
                     created_before, target_plans, enqueue_waiting_time, guard_batch_size,
                     event_retention)
                  = (DEFAULT, DEFAULT, DEFAULT, DEFAULT, DEFAULT, DEFAULT, DEFAULT, DEFAULT,
                     DEFAULT, DEFAULT, DEFAULT, DEFAULT, DEFAULT, DEFAULT);

-- Columns: type, NOT NULL (all but created_before and target_plans), default.
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid) AS default_expr
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = 'settings'::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum;

-- Exactly one row, holding the documented defaults.
SELECT count(*) AS rows FROM settings;
\x on
SELECT * FROM settings;
\x off
SELECT enabled = false AND capacity = 1 AND max_retries = 3 AND start_max_retries = 50
       AND max_step_duration = '5 minutes' AND pre_import_timeout = '30 minutes'
       AND import_timeout = '10 minutes' AND pre_import_tags_rate = 0.5
       AND max_tags_count = 100 AND created_before IS NULL AND target_plans IS NULL
       AND enqueue_waiting_time = '0' AND guard_batch_size = 100
       AND event_retention = '30 days' AS defaults_match_spec
  FROM settings;

-- Plain UPDATE changes it; the edge values are allowed (0 where ">= 0",
-- 1 for guard_batch_size, '{}' = no plan, NULL = no limit).
UPDATE settings SET enabled = true, capacity = 0, max_retries = 0, start_max_retries = 0,
       max_step_duration = '0', pre_import_timeout = '0', import_timeout = '0',
       pre_import_tags_rate = 0, max_tags_count = 0, created_before = '2022-06-01 00:00+00',
       target_plans = '{}', enqueue_waiting_time = '0', guard_batch_size = 1,
       event_retention = '0';
SELECT enabled, capacity, max_retries, start_max_retries, max_step_duration,
       pre_import_tags_rate, max_tags_count, created_before = '2022-06-01 00:00+00' AS created_before_set,
       target_plans, guard_batch_size, event_retention
  FROM settings;
UPDATE settings SET target_plans = '{free,premium,ultimate}', created_before = NULL,
       pre_import_tags_rate = 2.75, max_step_duration = '1 hour 30 minutes';
SELECT target_plans, created_before, pre_import_tags_rate, max_step_duration FROM settings;

-- Every CHECK refuses a bad value with 23514 and every NOT NULL column
-- refuses NULL with 23502, leaving the row unchanged; the two nullable
-- columns accept NULL.
SELECT v AS assignment, regress.try_ok('UPDATE registry_migration.settings SET ' || v) AS update
  FROM unnest(ARRAY[
       'capacity = -1', 'max_retries = -1', 'start_max_retries = -1',
       'max_tags_count = -1', 'guard_batch_size = 0', 'guard_batch_size = -1',
       'max_step_duration = ''-1 second''', 'pre_import_timeout = ''-1 second''',
       'import_timeout = ''-1 second''', 'enqueue_waiting_time = ''-1 second''',
       'event_retention = ''-1 second''', 'event_retention = ''1 mon -31 days''',
       'pre_import_tags_rate = -0.001', 'pre_import_tags_rate = ''NaN''',
       'pre_import_tags_rate = ''Infinity''', 'pre_import_tags_rate = ''-Infinity''',
       'target_plans = ''{free,NULL}''', 'target_plans = ARRAY[NULL]::text[]',
       'enabled = NULL', 'capacity = NULL', 'max_retries = NULL', 'start_max_retries = NULL',
       'max_step_duration = NULL', 'pre_import_timeout = NULL', 'import_timeout = NULL',
       'pre_import_tags_rate = NULL', 'max_tags_count = NULL', 'enqueue_waiting_time = NULL',
       'guard_batch_size = NULL', 'event_retention = NULL',
       -- nullable ones
       'created_before = NULL', 'target_plans = NULL']) AS v;
SELECT capacity, max_retries, guard_batch_size, pre_import_tags_rate, target_plans
  FROM settings;

-- INSERT (as a restore does) replaces the values of the row: the command
-- reports 0 rows, the columns it does not name take their defaults, there is
-- still exactly one row.
UPDATE settings SET capacity = 7, max_retries = 9, max_tags_count = 0,
       target_plans = '{gold}', event_retention = '1 day';
\set QUIET off
INSERT INTO settings (enabled, capacity) VALUES (true, 25);
\set QUIET on
\echo inserted rows: :ROW_COUNT
SELECT count(*) AS rows, min(enabled::int) AS enabled, min(capacity) AS capacity,
       min(max_retries) AS max_retries, min(max_tags_count) AS max_tags_count,
       min(target_plans) AS target_plans, min(event_retention) AS event_retention
  FROM settings;
-- RETURNING shows no row either.
INSERT INTO settings (capacity) VALUES (4) RETURNING capacity;
SELECT count(*) AS rows, min(capacity) AS capacity, bool_and(NOT enabled) AS enabled_back_to_default
  FROM settings;
-- DEFAULT VALUES: back to every default.
INSERT INTO settings DEFAULT VALUES;
SELECT count(*) AS rows, min(capacity) AS capacity FROM settings;
-- Several rows in one INSERT: the last one wins, still one row.
INSERT INTO settings (capacity) VALUES (11), (12), (13);
SELECT count(*) AS rows, min(capacity) AS capacity FROM settings;
-- A restore loads the row with COPY: it replaces the values too.
COPY settings (enabled, capacity, max_retries, target_plans, event_retention) FROM stdin;
t	42	5	{free,premium}	7 days
\.
SELECT count(*) AS rows, min(enabled::int) AS enabled, min(capacity) AS capacity,
       min(max_retries) AS max_retries, min(target_plans) AS target_plans,
       min(event_retention) AS event_retention, min(guard_batch_size) AS guard_batch_size
  FROM settings;
-- An INSERT breaking a CHECK or a NOT NULL is refused like an UPDATE, and
-- changes nothing.
SELECT regress.try_ok('INSERT INTO registry_migration.settings (capacity) VALUES (-5)') AS insert;
SELECT regress.try_ok('INSERT INTO registry_migration.settings (enabled) VALUES (NULL)') AS insert;
SELECT regress.try_ok('INSERT INTO registry_migration.settings (target_plans) VALUES (''{a,NULL}'')') AS insert;
SELECT count(*) AS rows, min(capacity) AS capacity FROM settings;

-- DELETE and TRUNCATE are refused with 55000; the row stays.
\set VERBOSITY default
DELETE FROM settings;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE settings;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM settings WHERE capacity = 42;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS rows, min(capacity) AS capacity FROM settings;

-- With triggers disabled (session_replication_role = replica, superuser),
-- as a data-only restore may do, a second row is still impossible: the
-- unique index refuses it (23505).
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO settings DEFAULT VALUES;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
COPY settings (capacity) FROM stdin;
3
\.
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT count(*) AS rows, min(capacity) AS capacity FROM settings;
-- With triggers disabled the row can be deleted; an INSERT then puts one
-- back (there is nothing to replace), and only one.
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM settings;
SET LOCAL session_replication_role = origin;
SELECT count(*) AS rows FROM settings;
INSERT INTO settings (capacity) VALUES (8);
INSERT INTO settings (capacity) VALUES (9);
SELECT count(*) AS rows, min(capacity) AS capacity FROM settings;
ROLLBACK;
SELECT count(*) AS rows, min(capacity) AS capacity FROM settings;

-- Leave the defaults for the next tests.
INSERT INTO settings DEFAULT VALUES;
