--
-- transitions: the state machine (events and the effects of entering a
-- state) through the functions that exist: skip() and reset(). Which states
-- allow each event, what entering the new state changes, what it leaves
-- alone, and that the timestamps are clock_timestamp(), the moment of the
-- change.
--
\set SHOW_CONTEXT never
SET search_path = registry_migration, public;

-- The tests share one database: start from an empty migration.
DELETE FROM repositories;
DELETE FROM events;
INSERT INTO settings DEFAULT VALUES;

-- One repository per state, consistent with what its state needs, every
-- timestamp that makes sense for the state set to a fixed, distinct time,
-- plus a history (retries, aborted_in_state) so that we can see what is kept.
-- Inserted twice: the 'skip/' set and the 'reset/' set.
CREATE TEMP TABLE seed AS
SELECT s AS state,
       CASE WHEN s NOT IN ('default') THEN timestamptz '2022-01-01 10:00+00' END AS pre_import_started_at,
       CASE WHEN s NOT IN ('default', 'pre_importing') THEN timestamptz '2022-01-01 11:00+00' END AS pre_import_done_at,
       CASE WHEN s IN ('importing', 'import_done', 'import_aborted', 'import_skipped')
            THEN timestamptz '2022-01-01 12:00+00' END AS import_started_at,
       CASE WHEN s IN ('import_done') THEN timestamptz '2022-01-01 13:00+00' END AS import_done_at,
       CASE WHEN s IN ('import_aborted', 'import_skipped')
            THEN timestamptz '2022-01-01 14:00+00' END AS aborted_at,
       CASE WHEN s IN ('import_skipped') THEN timestamptz '2022-01-01 15:00+00' END AS skipped_at,
       CASE WHEN s IN ('import_aborted', 'import_skipped') THEN 2 ELSE 0 END AS retries_count,
       CASE WHEN s IN ('import_skipped') THEN 'too_many_retries'::skip_reason END AS skipped_reason,
       CASE WHEN s IN ('import_aborted', 'import_skipped')
            THEN 'importing'::migration_state END AS aborted_in_state
  FROM unnest(enum_range(NULL::migration_state)) AS s;
INSERT INTO repositories (path, plan, created_at, state, pre_import_started_at, pre_import_done_at,
                          import_started_at, import_done_at, aborted_at, skipped_at,
                          retries_count, skipped_reason, aborted_in_state)
SELECT p || replace(state::text, '_', '-'), 'gold', '2021-12-31 00:00+00', state,
       pre_import_started_at, pre_import_done_at, import_started_at, import_done_at,
       aborted_at, skipped_at, retries_count, skipped_reason, aborted_in_state
  FROM seed, unnest(ARRAY['skip/', 'reset/']) AS p;
CREATE TEMP TABLE before AS SELECT * FROM repositories;
CREATE TEMP TABLE t_start AS SELECT clock_timestamp() AS t;

--
-- skip: allowed from default, pre_importing, pre_import_done, importing and
-- import_aborted; refused with 55000 naming the state from import_done and
-- import_skipped.
--
SELECT b.state AS from_state,
       regress.try_detail(format('SELECT registry_migration.skip(%L, %L)', b.path, 'not_in_plan')) AS skip
  FROM before b WHERE b.path LIKE 'skip/%' ORDER BY b.state;

-- After an allowed skip: import_skipped with the reason and a new
-- skipped_at; nothing else changed (no other timestamp cleared, retries
-- and aborted_in_state kept: nothing but entering a state clears a
-- timestamp).
SELECT b.state AS from_state, r.state, r.skipped_reason,
       r.skipped_at >= t_start.t AS new_skipped_at, r.aborted_at, r.aborted_in_state,
       (r.pre_import_started_at, r.pre_import_done_at, r.import_started_at, r.import_done_at,
        r.aborted_at, r.retries_count, r.aborted_in_state, r.plan, r.created_at, r.id)
       IS NOT DISTINCT FROM
       (b.pre_import_started_at, b.pre_import_done_at, b.import_started_at, b.import_done_at,
        b.aborted_at, b.retries_count, b.aborted_in_state, b.plan, b.created_at, b.id) AS rest_kept
  FROM before b JOIN repositories r USING (path), t_start
 WHERE path LIKE 'skip/%' AND b.state NOT IN ('import_done', 'import_skipped')
 ORDER BY b.state;
-- After a refused skip: the row is exactly as before, and no event logged.
SELECT b.state AS from_state, to_jsonb(r) = to_jsonb(b) AS unchanged,
       (SELECT count(*) FROM events e WHERE e.path = b.path) AS events
  FROM before b JOIN repositories r USING (path)
 WHERE b.path IN ('skip/import-done', 'skip/import-skipped') ORDER BY b.state;

--
-- reset: allowed from import_aborted and import_skipped only, back to
-- default with every migration timestamp, the reason and aborted_in_state
-- cleared and retries_count 0; path, plan, created_at, id kept.
--
SELECT b.state AS from_state,
       regress.try_detail(format('SELECT registry_migration.reset(%L)', b.path)) AS reset
  FROM before b WHERE b.path LIKE 'reset/%' ORDER BY b.state;
SELECT b.state AS from_state, r.state, r.pre_import_started_at, r.pre_import_done_at,
       r.import_started_at, r.import_done_at, r.aborted_at, r.skipped_at,
       r.retries_count, r.skipped_reason, r.aborted_in_state,
       (r.id, r.plan, r.created_at) = (b.id, b.plan, b.created_at) AS identity_kept
  FROM before b JOIN repositories r USING (path)
 WHERE b.path IN ('reset/import-aborted', 'reset/import-skipped') ORDER BY b.state;
-- Refused resets changed nothing and logged nothing.
SELECT count(*) AS refused, count(*) FILTER (WHERE to_jsonb(r) = to_jsonb(b)) AS unchanged,
       (SELECT count(*) FROM events e JOIN before b2 USING (path)
         WHERE b2.path LIKE 'reset/%' AND b2.state NOT IN ('import_aborted', 'import_skipped'))
           AS events
  FROM before b JOIN repositories r USING (path)
 WHERE b.path LIKE 'reset/%' AND b.state NOT IN ('import_aborted', 'import_skipped');
-- A second reset of a repository now in default is refused.
SELECT regress.try_detail($$SELECT registry_migration.reset('reset/import-skipped')$$) AS reset_again;

-- Round trip: a reset repository can be skipped again, then reset again.
SELECT skip('reset/import-aborted', 'too_many_tags') AS skip,
       reset('reset/import-aborted') AS reset;
SELECT state, skipped_at, skipped_reason, retries_count FROM repositories
 WHERE path = 'reset/import-aborted';

--
-- Timestamps are clock_timestamp() at the change, not now(): in
-- one transaction, taken after the transaction started, two skips a moment
-- apart get two increasing times, both later than now().
--
INSERT INTO repositories (path) VALUES ('clock/one'), ('clock/two');
BEGIN;
SELECT pg_sleep(0.01);
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS t;
SELECT skip('clock/one', 'not_found');
SELECT pg_sleep(0.01);
SELECT skip('clock/two', 'not_found');
SELECT r.path, r.skipped_at > now() AS after_transaction_start,
       r.skipped_at >= t0.t AS after_statement_start,
       r.skipped_at <= clock_timestamp() AS not_in_future
  FROM repositories r, t0 WHERE r.path LIKE 'clock/%' ORDER BY r.path;
SELECT (SELECT skipped_at FROM repositories WHERE path = 'clock/two')
     > (SELECT skipped_at FROM repositories WHERE path = 'clock/one') AS second_is_later;
COMMIT;
-- Every repository still holds what its state needs (the CHECKs would have
-- refused the UPDATE otherwise; counted here for the record).
SELECT state, count(*) FROM repositories GROUP BY state ORDER BY state;
