--
-- schema: the tables (repositories, events, the deny list), and what must
-- hold in each state, enforced by named CHECK constraints on direct INSERT
-- and UPDATE.
--
\set SHOW_CONTEXT never
SET search_path = registry_migration, public;

-- The tests share one database: start from an empty migration.
DELETE FROM repositories;
DELETE FROM events;
DELETE FROM denied_namespaces;

-- Columns of repositories: names, types, nullability, defaults, identity
-- (BY DEFAULT, so rows can be loaded with their ids) and generated column.
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
       a.attidentity, a.attgenerated, pg_get_expr(d.adbin, d.adrelid) AS default_or_expr
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = 'repositories'::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum;

-- Primary key on id, unique path; no foreign key anywhere in the schema.
SELECT conname, contype, pg_get_constraintdef(oid) AS definition
  FROM pg_constraint
 WHERE conrelid = 'repositories'::regclass AND contype IN ('p', 'u')
 ORDER BY conname;
SELECT count(*) AS foreign_keys FROM pg_constraint
 WHERE contype = 'f' AND connamespace = 'registry_migration'::regnamespace;

-- INSERT (path) alone works and fills the defaults (created_at is now(),
-- the transaction's start).
BEGIN;
INSERT INTO repositories (path) VALUES ('group/sub/project/image');
SELECT path, root_namespace, plan, state, retries_count, created_at = now() AS created_now,
       pre_import_started_at, pre_import_done_at, import_started_at, import_done_at,
       aborted_at, skipped_at, skipped_reason, aborted_in_state
  FROM repositories WHERE path = 'group/sub/project/image';
COMMIT;

-- root_namespace is the first segment, also for a one-segment path, and it
-- follows an UPDATE of path; it cannot be written.
INSERT INTO repositories (path, plan) VALUES ('solo', NULL), ('gold-group/app', 'gold');
UPDATE repositories SET path = 'other/sub/project/image' WHERE path = 'group/sub/project/image';
SELECT path, root_namespace, plan FROM repositories ORDER BY id;
SELECT regress.try_ok($$INSERT INTO repositories (path, root_namespace) VALUES ('x/y', 'z')$$);

-- path is NOT NULL and UNIQUE (exact: another case or a trailing slash is
-- another string, refused by the grammar instead).
SELECT regress.try_ok($$INSERT INTO repositories (path) VALUES (NULL)$$);
SELECT regress.try_ok($$INSERT INTO repositories (path) VALUES ('solo')$$);
SELECT regress.try_ok($$UPDATE repositories SET path = 'solo' WHERE path = 'gold-group/app'$$);

-- retries_count >= 0.
SELECT regress.try_ok($$INSERT INTO repositories (path, retries_count) VALUES ('r', -1)$$);
SELECT regress.try_ok($$UPDATE repositories SET retries_count = -1 WHERE path = 'solo'$$);
SELECT regress.try_ok($$INSERT INTO repositories (path, retries_count) VALUES ('r', 0)$$);
SELECT regress.try_ok($$INSERT INTO repositories (path, retries_count) VALUES ('r2', 7)$$);
SELECT path, retries_count FROM repositories WHERE path IN ('r', 'r2') ORDER BY path;

-- aborted_in_state: NULL or one of the four step states.
SELECT s AS aborted_in_state,
       regress.try_ok(format($$INSERT INTO repositories (path, state, aborted_at, retries_count,
                             aborted_in_state) VALUES (%L, 'import_aborted', now(), 1, %L)$$,
                          'ais/' || replace(s::text, '_', '-'), s), false) AS insert,
       regress.try_ok(format($$UPDATE repositories SET aborted_in_state = %L WHERE path = 'solo'$$,
                          s), false) AS update
  FROM unnest(enum_range(NULL::migration_state)) AS s ORDER BY s;

-- What must hold in each state (the cases below), state by state: each
-- violation refused by INSERT and by UPDATE (of a consistent 'solo' row in
-- state default) with 23514 naming the constraint; the satisfied form
-- accepted. Every case runs in its own subtransaction rolled back, so
-- nothing accepted here stays.
CREATE TEMP TABLE cases (state text, what text, cols text, ok boolean);
INSERT INTO cases VALUES
 ('pre_importing', 'started NULL', 'pre_import_started_at = NULL', false),
 ('pre_importing', 'done set', 'pre_import_started_at = now(), pre_import_done_at = now()', false),
 ('pre_importing', 'started, done NULL', 'pre_import_started_at = now()', true),
 ('pre_import_done', 'done NULL', 'pre_import_done_at = NULL', false),
 ('pre_import_done', 'done set', 'pre_import_done_at = now()', true),
 ('importing', 'started NULL', 'import_started_at = NULL', false),
 ('importing', 'done set', 'import_started_at = now(), import_done_at = now()', false),
 ('importing', 'started, done NULL', 'import_started_at = now()', true),
 ('import_done', 'done NULL', 'import_done_at = NULL', false),
 ('import_done', 'done set', 'import_done_at = now()', true),
 ('import_aborted', 'aborted_at NULL', 'aborted_at = NULL, retries_count = 1', false),
 ('import_aborted', 'retries_count 0', 'aborted_at = now(), retries_count = 0', false),
 ('import_aborted', 'aborted_at, retries 1', 'aborted_at = now(), retries_count = 1', true),
 ('import_skipped', 'reason NULL', 'skipped_reason = NULL, skipped_at = now()', false),
 ('import_skipped', 'skipped_at NULL', 'skipped_reason = ''not_found'', skipped_at = NULL', false),
 ('import_skipped', 'reason, skipped_at', 'skipped_reason = ''not_found'', skipped_at = now()', true);

-- "a = x, b = y" as an INSERT column list and value list.
CREATE FUNCTION pg_temp.as_insert(path text, state text, cols text) RETURNS text
LANGUAGE sql AS $$
SELECT format('INSERT INTO registry_migration.repositories (path, state, %s) VALUES (%L, %L, %s)',
              string_agg(split_part(c, ' = ', 1), ', '), path, state,
              string_agg(split_part(c, ' = ', 2), ', '))
  FROM unnest(string_to_array(cols, ', ')) AS c $$;

SELECT state, what,
       regress.try_ok(pg_temp.as_insert('case/new', state, cols), false) AS insert,
       regress.try_ok(format('UPDATE registry_migration.repositories SET state = %L, %s WHERE path = %L',
                          state, cols, 'solo'), false) AS update
  FROM cases ORDER BY state::migration_state, ok, what;
-- Every refusal above was a constraint of the right name.
SELECT count(*) AS refusals_with_23514 FROM cases
 WHERE NOT ok AND regress.try_ok(pg_temp.as_insert('case/new', state, cols), false)
                  LIKE '23514 %violates check constraint "' || state || '_invariant"';

-- An UPDATE that breaks the invariant of a row already in that state.
INSERT INTO repositories (path, state, pre_import_started_at)
VALUES ('inv/pre-importing', 'pre_importing', now());
SELECT regress.try_ok($$UPDATE repositories SET pre_import_done_at = now()
                     WHERE path = 'inv/pre-importing'$$);
INSERT INTO repositories (path, state, skipped_reason, skipped_at)
VALUES ('inv/skipped', 'import_skipped', 'not_in_plan', now());
SELECT regress.try_ok($$UPDATE repositories SET skipped_at = NULL WHERE path = 'inv/skipped'$$);
SELECT regress.try_ok($$UPDATE repositories SET state = 'default' WHERE path = 'inv/skipped'$$);

-- Any state may be inserted when consistent, with extra columns set
-- (migrating from an existing system needs that), and rows move freely by
-- direct UPDATE as long as the target state's invariant holds.
INSERT INTO repositories (id, path, state, created_at, pre_import_started_at, pre_import_done_at,
                          import_started_at, import_done_at, aborted_at, skipped_at,
                          retries_count, skipped_reason, aborted_in_state)
VALUES (1000000, 'full/done', 'import_done', '2022-01-01', '2022-01-02', '2022-01-03', '2022-01-04',
        '2022-01-05', NULL, NULL, 2, 'native_import', NULL),
       (1000001, 'full/default', 'default', '2022-01-01', '2022-01-02', '2022-01-03', '2022-01-04',
        '2022-01-05', '2022-01-06', '2022-01-07', 5, 'not_found', 'importing');
SELECT id, path, state, retries_count, skipped_reason, aborted_in_state
  FROM repositories WHERE path LIKE 'full/%' ORDER BY id;
SELECT regress.try_ok($$UPDATE repositories SET state = 'pre_import_done' WHERE path = 'full/done'$$);
SELECT regress.try_ok($$UPDATE repositories SET state = 'import_aborted', aborted_at = now()
                     WHERE path = 'full/done'$$);

-- A repository can be deleted even when it has events (no foreign key from
-- the event log); its events stay.
SELECT skip('solo', 'not_in_plan');
SELECT count(*) AS events_of_solo FROM events WHERE path = 'solo';
DELETE FROM repositories WHERE path = 'solo';
SELECT count(*) AS solo_rows, (SELECT count(*) FROM events WHERE path = 'solo') AS events_kept
  FROM repositories WHERE path = 'solo';

-- The event log's columns and its cause CHECK.
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull, a.attidentity,
       pg_get_expr(d.adbin, d.adrelid) AS default_expr
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = 'events'::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum;
SELECT c AS cause,
       regress.try_ok(format($$INSERT INTO events (repository_id, path, old_state, new_state, cause, event)
                            VALUES (1, 'x', 'default', 'default', %L, 'test')$$, c)) AS insert
  FROM unnest(ARRAY['guard', 'enqueuer', 'notification', 'admin', 'Admin', 'cron']) AS c;

-- The deny list: root namespaces never started or retried.
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull
  FROM pg_attribute a
 WHERE a.attrelid = 'denied_namespaces'::regclass AND a.attnum > 0 AND NOT a.attisdropped;
SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'denied_namespaces'::regclass;

-- state_counts: one row per state, zeros included.
SELECT * FROM state_counts;
