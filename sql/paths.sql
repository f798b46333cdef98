--
-- paths: the repository path grammar (the Docker distribution's, at most
-- 255 bytes, no case folding). A bad path is refused on INSERT and on UPDATE
-- OF path with SQLSTATE 23514 and a message saying what is wrong (trigger
-- check_path); the CHECK constraint path_grammar, which still holds when
-- triggers are disabled, accepts exactly the same paths.
--
\set SHOW_CONTEXT never
SET search_path = registry_migration, public;

-- The tests share one database: start from an empty migration.
DELETE FROM repositories;
DELETE FROM events;

-- Paths for display: control characters escaped, and a run of ten or more
-- copies of one or two characters X shown as "X{...}".
CREATE FUNCTION pg_temp.shown(s text) RETURNS text LANGUAGE sql AS $$
SELECT regexp_replace(regexp_replace(replace(replace(s, E'\n', '\n'), E'\t', '\t'),
                                     '(.)\1{9,}', '\1{...}', 'g'),
                      '(..)\1{9,}', '\1{...}', 'g') $$;

CREATE TEMP TABLE samples (n serial, path text, valid boolean);
INSERT INTO samples (path, valid) VALUES
 -- valid: components of [a-z0-9] joined by ".", "_", "__" or "-"+
 ('a', true), ('0', true), ('image', true), ('group/sub/project/image', true),
 ('a.b', true), ('a_b', true), ('a__b', true), ('a-b', true), ('a--b', true),
 ('a---b', true), ('a.b-c_d__e/f9', true), ('0-9/a.b/c__d', true),
 ('a/b/c/d/e/f/g/h/i/j', true),
 (repeat('a', 255), true),                       -- 255 bytes: the limit
 (repeat('a', 127) || '/' || repeat('b', 127), true),
 -- invalid
 ('', false),                                    -- empty
 ('A', false), ('Image', false), ('imagE', false), ('group/Image', false),  -- upper case
 ('/a', false), ('a/', false), ('/', false),     -- leading / trailing slash
 ('a//b', false), ('a/b//c', false),             -- empty component
 ('a._b', false), ('a_.b', false), ('a.-b', false), ('a-.b', false),   -- mixed separators
 ('a..b', false), ('a___b', false), ('a-_b', false),                   -- doubled separators
 ('.a', false), ('_a', false), ('-a', false), ('__a', false),          -- leading separator
 ('a.', false), ('a_', false), ('a-', false), ('a__', false),          -- trailing separator
 ('a/.b', false), ('a/b-', false), ('a/./b', false), ('a/../b', false),
 ('a b', false), (' a', false), ('a ', false), (E'a\tb', false),      -- spaces
 (E'a\n', false), (E'a\nb', false),              -- newline (also at the end)
 ('a:b', false), ('a@b', false), ('a+b', false), ('a\b', false), ('a%2fb', false),
 ('é', false), ('café', false), ('a/ü', false), ('ａ', false),  -- non-ASCII
 (repeat('a', 256), false),                      -- 256 bytes
 (repeat('a', 254) || 'é', false),               -- 255 characters, 256 bytes
 (repeat('a/', 127) || 'aa', false),             -- 256 bytes of valid components
 (repeat('a', 1000), false);

-- INSERT: every valid path accepted; every invalid one refused with 23514
-- and a message that says what is wrong.
SELECT n, pg_temp.shown(path) AS path, octet_length(path) AS bytes,
       pg_temp.shown(regress.try_ok(format('INSERT INTO registry_migration.repositories (path) VALUES (%L)',
                                        path), keep => false)) AS insert
  FROM samples ORDER BY n;

-- The same paths by UPDATE OF path of an existing row: same verdicts, same
-- messages.
INSERT INTO repositories (path) VALUES ('existing/repo');
SELECT count(*) AS samples,
       count(*) FILTER (WHERE
           regress.try_ok(format('UPDATE registry_migration.repositories SET path = %L WHERE path = %L',
                              path, 'existing/repo'), keep => false)
           = regress.try_ok(format('INSERT INTO registry_migration.repositories (path) VALUES (%L)',
                                path), keep => false)) AS same_verdict_on_update,
       count(*) FILTER (WHERE
           (regress.try_ok(format('UPDATE registry_migration.repositories SET path = %L WHERE path = %L',
                               path, 'existing/repo'), keep => false) = 'ok') = valid) AS as_expected
  FROM samples;
-- Two of them in full.
UPDATE repositories SET path = 'Existing/repo' WHERE path = 'existing/repo';
UPDATE repositories SET path = path || '/' WHERE path = 'existing/repo';
SELECT path FROM repositories;

-- The full error of one refusal: message and DETAIL (the grammar).
\set VERBOSITY default
INSERT INTO repositories (path) VALUES ('group//image');
\echo :LAST_ERROR_SQLSTATE
-- COPY (how users load repositories) goes through the same check.
COPY repositories (path) FROM stdin;
copied/ok
\.
COPY repositories (path) FROM stdin;
copied/Bad
\.
\echo :LAST_ERROR_SQLSTATE
SELECT path FROM repositories ORDER BY path;

-- The backstop: with triggers disabled (session_replication_role =
-- replica, superuser) the CHECK constraint path_grammar refuses exactly the
-- paths the trigger refuses, and accepts exactly the ones it accepts: one
-- query over the whole list, grouped by the three verdicts.
WITH verdicts AS (
    SELECT valid,
           regress.try_ok(format('INSERT INTO registry_migration.repositories (path) VALUES (%L)',
                              path), keep => false) AS by_trigger,
           regress.try_ok(format('INSERT INTO registry_migration.repositories (path) VALUES (%L)',
                              path), keep => false, replica => true) AS by_check
      FROM samples)
SELECT valid, by_trigger = 'ok' AS trigger_accepts, by_check, count(*)
  FROM verdicts GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

-- The same for UPDATE OF path with triggers disabled.
SELECT valid, regress.try_ok(format('UPDATE registry_migration.repositories SET path = %L WHERE path = %L',
                                 path, 'existing/repo'), keep => false, replica => true) AS by_check_on_update, count(*)
  FROM samples GROUP BY 1, 2 ORDER BY 1, 2;

-- The role switch did not leak out of the rolled-back subtransactions.
SHOW session_replication_role;
