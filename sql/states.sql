--
-- states: the SQL enum types have the documented labels in their order,
-- and every label goes through the C library by name in both directions.
--
\set SHOW_CONTEXT never
SET search_path = registry_migration, public;

-- The tests share one database: start from an empty migration.
DELETE FROM repositories;
DELETE FROM events;

-- The labels, in enum order (enumsortorder), exactly as documented.
SELECT enum_range(NULL::migration_state)::text[] =
       ARRAY['default', 'pre_importing', 'pre_import_done', 'importing',
             'import_done', 'import_aborted', 'import_skipped'] AS states_match_spec;
SELECT enum_range(NULL::skip_reason)::text[] =
       ARRAY['not_in_plan', 'too_many_retries', 'too_many_tags',
             'root_namespace_in_deny_list', 'migration_canceled', 'not_found',
             'native_import', 'migration_forced_canceled',
             'migration_canceled_by_registry'] AS reasons_match_spec;

-- The same, read from pg_enum in sort order (shows the labels for review).
SELECT t.typname, e.enumlabel
  FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
 WHERE t.typnamespace = 'registry_migration'::regnamespace
 ORDER BY t.typname, e.enumsortorder;

-- SQL state -> C: retry_decision() accepts every state. With status 'native'
-- the C table answers 'none' for the two final states (row 1) and
-- 'finish_import_native' for the others (row 3), so a label mapped to the
-- wrong C state would show here; pre_import_in_progress separates
-- pre_importing (row 4) from the rest (row 5), import_in_progress
-- importing (row 6), pre_import_complete default/importing (row 10) and
-- pre_import_failed import_aborted (row 11) and default (row 14).
SELECT s AS state,
       retry_decision(s, 'native', 0, 3) AS native,
       retry_decision(s, 'pre_import_in_progress', 0, 3) AS pre_running,
       retry_decision(s, 'import_in_progress', 0, 3) AS running,
       retry_decision(s, 'pre_import_complete', 0, 3) AS pre_complete,
       retry_decision(s, 'pre_import_failed', 0, 3) AS pre_failed
  FROM unnest(enum_range(NULL::migration_state)) AS s
 ORDER BY s;

-- C -> SQL migration_state: skip() returns the state the C library names.
-- One repository per state, each consistent with what its state needs
-- (inserted directly).
INSERT INTO repositories (path, state, pre_import_started_at, pre_import_done_at,
                          import_started_at, import_done_at, aborted_at,
                          retries_count, skipped_reason, skipped_at)
SELECT 'state/' || replace(s::text, '_', '-'), s,
       CASE WHEN s = 'pre_importing' THEN now() END,
       CASE WHEN s = 'pre_import_done' THEN now() END,
       CASE WHEN s = 'importing' THEN now() END,
       CASE WHEN s = 'import_done' THEN now() END,
       CASE WHEN s = 'import_aborted' THEN now() END,
       CASE WHEN s = 'import_aborted' THEN 1 ELSE 0 END,
       CASE WHEN s = 'import_skipped' THEN 'not_found'::skip_reason END,
       CASE WHEN s = 'import_skipped' THEN now() END
  FROM unnest(enum_range(NULL::migration_state)) AS s;

-- C reads every state of a row (the old_state it logs, or the state named in
-- the refusal) and writes import_skipped back.
CREATE FUNCTION pg_temp.try_skip(p text, r skip_reason) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    RETURN skip(p, r)::text;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;

SELECT r.path, r.state AS before, pg_temp.try_skip(r.path, 'not_in_plan') AS skip
  FROM repositories r ORDER BY r.state;
SELECT path, old_state, new_state FROM events ORDER BY old_state;

-- C SkipReason <-> SQL skip_reason: skip() with every reason writes it to
-- the row; the stored label is the one given.
INSERT INTO repositories (path)
SELECT 'reason/' || replace(r::text, '_', '-')
  FROM unnest(enum_range(NULL::skip_reason)) AS r;
SELECT r AS reason,
       skip('reason/' || replace(r::text, '_', '-'), r) AS state_after
  FROM unnest(enum_range(NULL::skip_reason)) AS r ORDER BY r;
SELECT count(*) AS reasons_round_tripped
  FROM repositories
 WHERE path = 'reason/' || replace(skipped_reason::text, '_', '-')
   AND state = 'import_skipped';

-- reset() reads the skip reason back from the row (C parses every label).
SELECT count(*) FILTER (WHERE reset(path) = 'default') AS reset_to_default
  FROM repositories WHERE path LIKE 'reason/%';
SELECT count(*) AS still_skipped FROM repositories
 WHERE path LIKE 'reason/%' AND (state <> 'default' OR skipped_reason IS NOT NULL);

-- C <-> SQL for aborted_in_state: skip() reads the column's label and writes
-- it back (skipping an aborted repository keeps it).
INSERT INTO repositories (path, state, aborted_at, retries_count, aborted_in_state)
SELECT 'aborted-in/' || replace(s::text, '_', '-'), 'import_aborted', now(), 1, s
  FROM unnest(ARRAY['default', 'pre_importing', 'pre_import_done',
                    'importing']::migration_state[]) AS s;
SELECT path, skip(path, 'not_in_plan') AS state_after, aborted_in_state
  FROM repositories WHERE path LIKE 'aborted-in/%' ORDER BY id;
SELECT count(*) AS aborted_in_state_kept FROM repositories
 WHERE path LIKE 'aborted-in/%'
   AND path = 'aborted-in/' || replace(aborted_in_state::text, '_', '-');
