--
-- privileges: PUBLIC has USAGE on the schema and
-- EXECUTE on retry_decision only; skip, reset and purge_events need a
-- grant, and with EXECUTE plus the table privileges they work. The extension
-- creates no roles: this test makes its own and drops them.
--
\set SHOW_CONTEXT never
SET search_path = registry_migration, public;

-- The tests share one database: start from an empty migration.
DELETE FROM repositories;
DELETE FROM events;
INSERT INTO settings DEFAULT VALUES;

-- Roles of an earlier, interrupted run (their grants went with its database).
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_rm_nobody;
DROP ROLE IF EXISTS regress_rm_operator;
RESET client_min_messages;
CREATE ROLE regress_rm_nobody NOLOGIN;
CREATE ROLE regress_rm_operator NOLOGIN;

-- Catalog: which functions of the extension PUBLIC may execute (a NULL
-- proacl means the default, which includes PUBLIC). Only retry_decision.
SELECT p.oid::regprocedure AS function,
       EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'registry_migration'::regnamespace
 ORDER BY p.proname;
SELECT array_agg(p.proname ORDER BY p.proname) AS public_may_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'registry_migration'::regnamespace
   AND EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE');
-- The schema: PUBLIC has USAGE (the extension grants it), not CREATE.
SELECT a.privilege_type
  FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
 WHERE n.nspname = 'registry_migration' AND a.grantee = 0;

INSERT INTO repositories (path) VALUES ('priv/one'), ('priv/two');

--
-- A role without any grant.
--
SET ROLE regress_rm_nobody;
SELECT current_user;
-- USAGE on the schema: its types resolve, retry_decision runs.
SELECT 'import_aborted'::registry_migration.migration_state AS type_usable;
SELECT registry_migration.retry_decision('import_aborted', 'import_canceled', 1, 3) AS retry_decision;
-- EXECUTE on everything else is refused with 42501.
SELECT c AS call, regress.try('SELECT registry_migration.' || c) AS result
  FROM unnest(ARRAY['skip(''priv/one'', ''not_found'')', 'reset(''priv/one'')',
                    'purge_events(10)', 'purge_events()']) AS c;
\set VERBOSITY default
SELECT registry_migration.skip('priv/one', 'not_found');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
RESET ROLE;
-- Nothing changed.
SELECT path, state FROM repositories ORDER BY path;

--
-- An operator role with EXECUTE and the table privileges the functions use
-- (they run with the caller's rights): it can skip, reset and purge.
--
GRANT EXECUTE ON FUNCTION registry_migration.skip(text, registry_migration.skip_reason),
                          registry_migration.reset(text),
                          registry_migration.purge_events(integer)
   TO regress_rm_operator;
GRANT SELECT, INSERT, UPDATE ON registry_migration.repositories TO regress_rm_operator;
GRANT SELECT ON registry_migration.settings TO regress_rm_operator;
GRANT SELECT, INSERT, DELETE ON registry_migration.events TO regress_rm_operator;
-- (one event row older than the retention, for purge_events to remove)
INSERT INTO events (repository_id, path, old_state, new_state, cause, event, at)
VALUES (0, 'priv/old', 'default', 'import_skipped', 'admin', 'skip', now() - interval '40 days');
SET ROLE regress_rm_operator;
SELECT registry_migration.skip('priv/one', 'not_found') AS skip;
SELECT registry_migration.reset('priv/one') AS reset;
SELECT registry_migration.purge_events(10) AS purged;
-- Its errors are the functions' own, not permission errors.
SELECT regress.try($$SELECT registry_migration.reset('priv/two')$$) AS reset_refused;
-- It can load repositories: the path trigger runs although PUBLIC has no
-- EXECUTE on the trigger function, and still refuses a bad path.
INSERT INTO registry_migration.repositories (path) VALUES ('priv/three');
SELECT regress.try($$INSERT INTO registry_migration.repositories (path) VALUES ('Priv/Bad')$$) AS bad_path;
-- The role without grants is still refused.
RESET ROLE;
SET ROLE regress_rm_nobody;
SELECT regress.try($$SELECT registry_migration.reset('priv/one')$$) AS nobody_reset;
RESET ROLE;
SELECT path, state FROM repositories ORDER BY path;
SELECT path, old_state, new_state, cause, event FROM events ORDER BY id;

-- The notification application's role, with exactly the README's grant
-- (EXECUTE on handle_notification, which runs with the extension owner's
-- rights): handle_notification works; no table can be read or changed
-- directly, and no other function runs.
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_rm_notifications;
RESET client_min_messages;
CREATE ROLE regress_rm_notifications NOLOGIN;
GRANT EXECUTE ON FUNCTION registry_migration.handle_notification(text, text) TO regress_rm_notifications;
INSERT INTO repositories (path, state, pre_import_started_at) VALUES ('priv/notified', 'pre_importing', now());
SET ROLE regress_rm_notifications;
SELECT registry_migration.handle_notification('priv/notified', 'pre_import_complete') AS notified;
SELECT registry_migration.handle_notification('priv/notified', 'pre_import_complete') AS duplicate;
SELECT c AS statement, regress.try(c) AS result
  FROM unnest(ARRAY[
    $$SELECT registry_migration.skip('priv/notified', 'not_found')$$,
    $$SELECT registry_migration.run_enqueuer()$$,
    $$SELECT count(*) FROM registry_migration.repositories$$,
    $$UPDATE registry_migration.repositories SET state = 'import_done', import_done_at = now()$$,
    $$UPDATE registry_migration.repositories SET retries_count = 0$$,
    $$INSERT INTO registry_migration.events (repository_id, path, old_state, new_state, cause, event)
      VALUES (0, 'priv/forged', 'default', 'import_done', 'admin', 'forged')$$,
    $$SELECT count(*) FROM registry_migration.settings$$,
    $$UPDATE registry_migration.registry_state SET retry_after_until = NULL$$]) AS c;
RESET ROLE;
SELECT path, state FROM repositories WHERE path = 'priv/notified';
SELECT count(*) AS forged_events FROM events WHERE event = 'forged';

-- Clean up: the roles and their grants, so that a rerun works.
DROP OWNED BY regress_rm_nobody, regress_rm_operator, regress_rm_notifications;
DROP ROLE regress_rm_nobody;
DROP ROLE regress_rm_operator;
DROP ROLE regress_rm_notifications;
SELECT count(*) AS roles_left FROM pg_roles WHERE rolname LIKE 'regress_rm_%';
