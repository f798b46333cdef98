--
-- counts: state_counts and progress read per-state counts that triggers
-- keep; after every kind of change they answer what a full count of the
-- table answers.
--
SET search_path = registry_migration, public;
DELETE FROM repositories;
SELECT count(*) AS unexpected_changes FROM recount_states();

-- What the views answered when they counted the whole table.
CREATE VIEW regress.full_state_counts AS
SELECT s.state, count(r.id) AS repositories
  FROM unnest(enum_range(NULL::migration_state)) AS s(state)
  LEFT JOIN repositories AS r ON r.state = s.state
 GROUP BY s.state;
CREATE VIEW regress.full_progress AS
WITH finishes AS (
    SELECT CASE state WHEN 'import_done' THEN import_done_at ELSE skipped_at END AS at,
           coalesce(pre_import_started_at, import_started_at,
                    CASE state WHEN 'import_done' THEN import_done_at ELSE skipped_at END) AS began
      FROM repositories WHERE state IN ('import_done', 'import_skipped')),
recent AS (
    SELECT count(*) AS finished,
           greatest(extract(epoch FROM now() - greatest(least(min(began), min(at)),
                                                        now() - interval '1 hour')), 1) AS seconds
      FROM finishes WHERE at > now() - interval '1 hour'),
counts AS (
    SELECT count(*) FILTER (WHERE state = 'import_done') AS done,
           count(*) FILTER (WHERE state = 'import_skipped') AS skipped,
           count(*) FILTER (WHERE state IN ('default', 'import_aborted')) AS remaining,
           count(*) FILTER (WHERE state IN ('pre_importing', 'pre_import_done', 'importing'))
               AS in_process
      FROM repositories)
SELECT c.done, c.skipped, c.remaining, c.in_process,
       round(r.finished * 3600 / r.seconds, 1) AS recent_rate_per_hour,
       CASE WHEN c.remaining + c.in_process = 0 THEN interval '0'
            WHEN r.finished > 0
            THEN make_interval(secs => round((c.remaining + c.in_process) * r.seconds / r.finished))
       END AS estimated_time_to_finish
  FROM counts AS c, recent AS r;

-- 'same' when both views agree with the full count, else both answers.
CREATE FUNCTION regress.counts_agree() RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN a.c = b.c AND p.c = q.c THEN 'same'
                ELSE 'state_counts ' || a.c || ' / full ' || b.c || '; progress ' || p.c || ' / full ' || q.c END
      FROM (SELECT string_agg(repositories::text, ',' ORDER BY state) AS c
              FROM registry_migration.state_counts) AS a,
           (SELECT string_agg(repositories::text, ',' ORDER BY state) AS c
              FROM regress.full_state_counts) AS b,
           (SELECT p::text AS c FROM registry_migration.progress AS p) AS p,
           (SELECT q::text AS c FROM regress.full_progress AS q) AS q
$$;

-- The views' columns and types are those of the full count.
SELECT attname, atttypid::regtype FROM pg_attribute
 WHERE attrelid = 'registry_migration.progress'::regclass AND attnum > 0 ORDER BY attnum;
SELECT attname, atttypid::regtype FROM pg_attribute
 WHERE attrelid = 'registry_migration.state_counts'::regclass AND attnum > 0 ORDER BY attnum;

-- Empty.
SELECT regress.counts_agree() AS empty;
SELECT done, skipped, remaining, in_process, recent_rate_per_hour FROM progress;

-- INSERT of many rows in one statement, of rows in every state.
INSERT INTO repositories (path, created_at)
SELECT 'cnt/r' || i, now() - interval '1 day' FROM generate_series(1, 500) AS i;
INSERT INTO repositories (path, state, pre_import_started_at) VALUES ('cnt/pre', 'pre_importing', now());
INSERT INTO repositories (path, state, pre_import_started_at, pre_import_done_at)
VALUES ('cnt/predone', 'pre_import_done', now(), now());
INSERT INTO repositories (path, state, pre_import_started_at, import_started_at)
VALUES ('cnt/imp', 'importing', now(), now());
INSERT INTO repositories (path, state, aborted_at, retries_count)
VALUES ('cnt/ab', 'import_aborted', now(), 1);
SELECT regress.counts_agree() AS after_inserts;

-- UPDATE of the state (some rows finish now, some two hours ago), and an
-- UPDATE that changes no state.
UPDATE repositories SET state = 'import_done', import_done_at = now() - interval '10 minutes'
 WHERE path ~ '^cnt/r[0-9]*0$';
UPDATE repositories SET state = 'import_done', import_done_at = now() - interval '2 hours'
 WHERE path ~ '^cnt/r[0-9]*1$';
UPDATE repositories SET state = 'import_skipped', skipped_at = now() - interval '30 minutes',
                        skipped_reason = 'not_found'
 WHERE path ~ '^cnt/r[0-9]*2$';
UPDATE repositories SET plan = 'gold' WHERE path ~ '^cnt/r[0-9]*3$';
SELECT regress.counts_agree() AS after_updates;
SELECT done, skipped, remaining, in_process, recent_rate_per_hour FROM progress;

-- Through the extension's own functions.
SELECT skip('cnt/r4', 'not_in_plan'), reset('cnt/r4'), skip('cnt/r5', 'too_many_tags');
SELECT handle_notification('cnt/pre', 'pre_import_complete');
SELECT regress.counts_agree() AS after_functions;

-- DELETE, and INSERT ... ON CONFLICT DO UPDATE (one insert, one update).
DELETE FROM repositories WHERE path ~ '^cnt/r[0-9]*[67]$';
INSERT INTO repositories (path, state, skipped_at, skipped_reason)
VALUES ('cnt/r8', 'import_skipped', now(), 'not_found'), ('cnt/new', 'import_skipped', now(), 'not_found')
ON CONFLICT (path) DO UPDATE
   SET state = excluded.state, skipped_at = excluded.skipped_at, skipped_reason = excluded.skipped_reason;
SELECT regress.counts_agree() AS after_delete_and_upsert;

-- Rolled back, and rolled back to a savepoint: the counts follow.
BEGIN;
DELETE FROM repositories WHERE state = 'default';
SELECT regress.counts_agree() AS inside_transaction;
ROLLBACK;
SELECT regress.counts_agree() AS after_rollback;
BEGIN;
UPDATE repositories SET state = 'import_done', import_done_at = now() WHERE path = 'cnt/r9';
SAVEPOINT s;
DELETE FROM repositories WHERE state = 'import_done';
INSERT INTO repositories (path) VALUES ('cnt/in_savepoint');
ROLLBACK TO SAVEPOINT s;
INSERT INTO repositories (path) VALUES ('cnt/after_savepoint');
COMMIT;
SELECT regress.counts_agree() AS after_savepoint;
-- A statement that fails after its rows were changed appends nothing.
SELECT regress.try_ok($$UPDATE repositories SET state = 'importing'$$) AS failed_update;
SELECT regress.counts_agree() AS after_failed_update;

-- COPY.
COPY repositories (path, state, skipped_at, skipped_reason) FROM stdin;
cnt/copy1	import_skipped	2020-01-01 00:00+00	not_found
cnt/copy2	default	\N	\N
cnt/copy3	default	\N	\N
\.
SELECT regress.counts_agree() AS after_copy;

-- Folding keeps the sums, and leaves one row per state.
SELECT fold_state_counts() > 7 AS folded_rows;
SELECT count(*) <= 7 AS one_row_per_state, count(*) = count(DISTINCT state) AS distinct_states
  FROM state_count_deltas;
SELECT regress.counts_agree() AS after_fold;
-- Every 64th appending statement folds by itself.
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        UPDATE registry_migration.repositories
           SET state = CASE state WHEN 'default' THEN 'import_aborted' ELSE 'default' END::registry_migration.migration_state,
               aborted_at = now(), retries_count = 1
         WHERE path = 'cnt/r13';
    END LOOP;
END $$;
SELECT count(*) < 200 AS folded_by_writers FROM state_count_deltas;
SELECT regress.counts_agree() AS after_many_updates;

-- TRUNCATE, also rolled back.
BEGIN;
TRUNCATE repositories;
SELECT regress.counts_agree() AS truncated;
ROLLBACK;
SELECT regress.counts_agree() AS truncate_rolled_back;
TRUNCATE repositories;
SELECT regress.counts_agree() AS after_truncate;
INSERT INTO repositories (path) VALUES ('cnt/again');
SELECT regress.counts_agree() AS after_truncate_and_insert;

-- Changes made with the triggers disabled (as a data-only restore with
-- --disable-triggers makes them) are not counted until recount_states().
ALTER TABLE repositories DISABLE TRIGGER USER;
INSERT INTO repositories (path) SELECT 'cnt/quiet' || i FROM generate_series(1, 5) AS i;
UPDATE repositories SET state = 'import_skipped', skipped_at = now(), skipped_reason = 'not_found'
 WHERE path = 'cnt/again';
ALTER TABLE repositories ENABLE TRIGGER USER;
SELECT regress.counts_agree() <> 'same' AS wrong_while_uncounted;
SELECT * FROM recount_states();
SELECT regress.counts_agree() AS after_recount;
SELECT * FROM recount_states();
-- Only at READ COMMITTED.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT regress.try('SELECT count(*) FROM registry_migration.recount_states()') AS recount_repeatable_read;
ROLLBACK;

-- Nobody but the owner may run the functions behind the counts, nor read
-- or write the deltas; the views and the triggers need no grant.
SELECT p.oid::regprocedure AS function, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p
 WHERE p.oid IN ('fold_state_counts()'::regprocedure, 'recount_states()'::regprocedure,
                 'count_state_changes()'::regprocedure)
 ORDER BY 1;
SELECT c.relname, c.relacl IS NULL AS owner_only
  FROM pg_class c
 WHERE c.oid IN ('state_count_deltas'::regclass, 'state_count_appends'::regclass)
 ORDER BY 1;

DELETE FROM repositories;
DROP FUNCTION regress.counts_agree();
DROP VIEW regress.full_progress;
DROP VIEW regress.full_state_counts;
