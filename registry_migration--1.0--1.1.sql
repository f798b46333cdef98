-- registry_migration 1.0 -> 1.1: trust boundaries.

\echo Use "ALTER EXTENSION registry_migration UPDATE TO '1.1'" to load this file. \quit

-- The update runs while the worker and the notification receiver go on
-- writing. Taking each table's lock only when a statement below needs it
-- could wait for a writer that waits in turn for a lock taken earlier here
-- (a deadlock that fails one side). So every lock the update needs is taken
-- first, all at once or none: a try that finds a table busy releases what it
-- got and tries again a moment later. The writers then wait for the update,
-- never the other way round. A lock_timeout set by the caller still bounds
-- the wait.
DO $$
DECLARE
    -- NULL (never) when lock_timeout is 0.
    give_up_at timestamptz := clock_timestamp()
                              + NULLIF(current_setting('lock_timeout')::interval, '0');
BEGIN
    LOOP
        BEGIN
            LOCK TABLE @extschema@.settings, @extschema@.events IN ACCESS EXCLUSIVE MODE NOWAIT;
            LOCK TABLE @extschema@.repositories, @extschema@.registry_state
                IN SHARE ROW EXCLUSIVE MODE NOWAIT;
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
            IF clock_timestamp() >= give_up_at THEN
                RAISE EXCEPTION 'the update could not lock the extension''s tables within lock_timeout'
                    USING ERRCODE = 'lock_not_available',
                          HINT = 'Run it again, or with a longer lock_timeout.';
            END IF;
        END;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;

-- Every function that runs statements resolves names only in pg_catalog and
-- in the extension's schema, whatever search_path its caller has: otherwise
-- an operator or function planted in another schema (for example "=" on
-- migration_state) would run with the rights of whoever runs a cycle. The
-- trigger functions and retry_decision run no statement.
ALTER FUNCTION @extschema@.skip(text, @extschema@.skip_reason) SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.reset(text) SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.purge_events(integer) SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.registry_import_status(text) SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.registry_tags_count(text) SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.registry_import_statuses(text[]) SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.run_guard() SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.run_enqueuer() SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.cancel(text, boolean) SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.retry(text) SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.registry_request(text, text) SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.worker_status_internal() SET search_path = pg_catalog, @extschema@, pg_temp;

-- The application that receives the registry's notifications needs EXECUTE
-- on this function and nothing else: it runs with the extension owner's
-- rights, so that role can neither read nor change any table directly.
ALTER FUNCTION @extschema@.handle_notification(text, text)
    SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp;

-- The registry-wide Retry-After row can no more be removed than the
-- settings row: without it a pending Retry-After would be forgotten.
CREATE FUNCTION @extschema@.refuse_row_removal() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'the row of %.% cannot be removed', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'object_not_in_prerequisite_state',
              DETAIL = 'This table always holds exactly one row.',
              HINT = format('Change it with UPDATE %I.%I SET ...', TG_TABLE_SCHEMA, TG_TABLE_NAME);
END
$$;

DROP TRIGGER refuse_delete ON @extschema@.settings;
DROP TRIGGER refuse_truncate ON @extschema@.settings;
DROP FUNCTION @extschema@.settings_refuse_removal();
CREATE TRIGGER refuse_delete BEFORE DELETE ON @extschema@.settings
    FOR EACH ROW EXECUTE FUNCTION @extschema@.refuse_row_removal();
CREATE TRIGGER refuse_truncate BEFORE TRUNCATE ON @extschema@.settings
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.refuse_row_removal();
CREATE TRIGGER refuse_delete BEFORE DELETE ON @extschema@.registry_state
    FOR EACH ROW EXECUTE FUNCTION @extschema@.refuse_row_removal();
CREATE TRIGGER refuse_truncate BEFORE TRUNCATE ON @extschema@.registry_state
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.refuse_row_removal();

REVOKE ALL ON FUNCTION @extschema@.refuse_row_removal() FROM PUBLIC;

-- Per-state counts kept by triggers, and the views read from them. No
-- writer may change repositories between the creation of the triggers and
-- the first count.
LOCK TABLE @extschema@.repositories IN SHARE ROW EXCLUSIVE MODE;

CREATE INDEX repositories_import_done ON @extschema@.repositories (import_done_at)
    WHERE state = 'import_done';
CREATE INDEX repositories_skipped ON @extschema@.repositories (skipped_at)
    WHERE state = 'import_skipped';

-- The enqueuer's waiting time counts the latest finish of every repository
-- in a state where a step has ended, from any of the four finish columns,
-- whichever of those states it is in. The extension sets a finish column
-- only as a row enters the state it records, so a row's own column is its
-- latest finish, found through the partial index of its state
-- (repositories_final_imports, _import_done, _aborted, _skipped). This index
-- holds the rows where another finish column is later: only a direct change
-- of the table makes one, so it stays empty, and adds no entry to write,
-- while the extension drives the migration.
CREATE INDEX repositories_later_finish ON @extschema@.repositories
    (greatest(pre_import_done_at, import_done_at, aborted_at, skipped_at))
    WHERE greatest(pre_import_done_at, import_done_at, aborted_at, skipped_at)
          > CASE state WHEN 'pre_import_done' THEN pre_import_done_at
                       WHEN 'import_done' THEN import_done_at
                       WHEN 'import_aborted' THEN aborted_at
                       WHEN 'import_skipped' THEN skipped_at END;

-- Per-state counts, kept as the repositories change so that state_counts
-- and progress read a handful of rows instead of the whole table.
--
-- Each statement that changes repositories appends one row per state whose
-- count it changed (net of the statement), from statement-level AFTER
-- triggers with transition tables: a COPY of millions of rows appends at
-- most seven rows, and concurrent writers only ever INSERT here, so none
-- waits for another (a single counter row per state would serialize them).
-- The rows are part of the writer's transaction: a rollback, or a rollback
-- to a savepoint, takes its deltas away with its changes. The views sum the
-- deltas by state; fold_state_counts() replaces the rows it can lock by one
-- sum per state. Every 64th appending statement folds, in READ COMMITTED
-- only (the lock it takes skips rows other transactions are folding, which
-- a stricter isolation level would answer with a serialization failure).
--
-- Not dumped: a restore loads repositories through COPY with the triggers
-- on, and that COPY appends the counts again; dumping this table too would
-- count every row twice. A data-only restore with triggers disabled (and
-- any change made while they are disabled) is repaired by
-- recount_states().
CREATE TABLE @extschema@.state_count_deltas (
    state @extschema@.migration_state NOT NULL,
    delta bigint NOT NULL
);

-- Numbers the appending statements, to fold every 64th.
CREATE SEQUENCE @extschema@.state_count_appends AS bigint CYCLE;

CREATE FUNCTION @extschema@.fold_state_counts() RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, @extschema@, pg_temp AS $$
DECLARE
    folded bigint;
BEGIN
    -- Like a writer, so that a TRUNCATE or a recount never runs meanwhile.
    LOCK TABLE repositories IN ROW EXCLUSIVE MODE;
    -- Rows another transaction is folding, or has folded since this
    -- statement's snapshot, are left alone: the sum written back is exactly
    -- that of the rows deleted here, whatever runs at the same time.
    WITH taken AS (
        DELETE FROM state_count_deltas
         WHERE ctid = ANY (ARRAY(SELECT ctid FROM state_count_deltas FOR UPDATE SKIP LOCKED))
        RETURNING state, delta),
    written AS (
        INSERT INTO state_count_deltas (state, delta)
        SELECT state, sum(delta) FROM taken GROUP BY state HAVING sum(delta) <> 0)
    SELECT count(*) INTO folded FROM taken;
    RETURN folded;
END
$$;

-- Runs with the extension owner's rights, so that whoever may change
-- repositories (an operator, the worker's role, the notification role
-- through handle_notification) needs no privilege on the counts. It only
-- ever appends what the statement itself changed. Written in C: it runs
-- with every change of state, and as a query over the transition tables it
-- cost as much as the change itself.
CREATE FUNCTION @extschema@.count_state_changes() RETURNS trigger
    LANGUAGE c SECURITY DEFINER
    SET search_path = pg_catalog, @extschema@, pg_temp
    AS 'MODULE_PATHNAME', 'rm_count_state_changes';

CREATE TRIGGER count_inserts AFTER INSERT ON @extschema@.repositories
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.count_state_changes();
CREATE TRIGGER count_updates AFTER UPDATE ON @extschema@.repositories
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.count_state_changes();
CREATE TRIGGER count_deletes AFTER DELETE ON @extschema@.repositories
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.count_state_changes();
CREATE TRIGGER count_truncates AFTER TRUNCATE ON @extschema@.repositories
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.count_state_changes();

-- Counts every state again from the rows, replaces the deltas by the
-- result, and returns the states whose recorded count was wrong (no row:
-- the counts were right). For a data-only restore with triggers disabled,
-- or any change made while the triggers were disabled. It blocks writers
-- of repositories for one scan of the table, never readers.
CREATE FUNCTION @extschema@.recount_states()
    RETURNS TABLE (state @extschema@.migration_state, recorded bigint, counted bigint)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, @extschema@, pg_temp AS $$
#variable_conflict use_column
BEGIN
    -- The count needs a snapshot taken after the locks.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'recount_states() must run at isolation level READ COMMITTED'
            USING ERRCODE = 'invalid_transaction_state',
                  DETAIL = 'At a stricter level the count would use a snapshot taken before its locks, and could miss changes committed in between.',
                  HINT = 'Run it outside an explicit transaction, or in one started with BEGIN ISOLATION LEVEL READ COMMITTED.';
    END IF;
    -- Writers of repositories, folds and other recounts wait.
    LOCK TABLE repositories IN SHARE ROW EXCLUSIVE MODE;
    RETURN QUERY
    WITH recorded AS (
        SELECT x.state, sum(x.delta) AS total FROM state_count_deltas AS x GROUP BY x.state),
    counted AS (
        SELECT x.state, count(*) AS total FROM repositories AS x GROUP BY x.state),
    removed AS (
        DELETE FROM state_count_deltas),
    written AS (
        INSERT INTO state_count_deltas (state, delta) SELECT c.state, c.total FROM counted AS c)
    SELECT s.state, coalesce(d.total, 0)::bigint, coalesce(c.total, 0)
      FROM unnest(enum_range(NULL::migration_state)) AS s(state)
      LEFT JOIN recorded AS d ON d.state = s.state
      LEFT JOIN counted AS c ON c.state = s.state
     WHERE coalesce(d.total, 0) <> coalesce(c.total, 0)
     ORDER BY s.state;
END
$$;

REVOKE ALL ON FUNCTION @extschema@.fold_state_counts() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.count_state_changes() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.recount_states() FROM PUBLIC;

-- The repositories already there.
INSERT INTO @extschema@.state_count_deltas (state, delta)
SELECT state, count(*) FROM @extschema@.repositories GROUP BY state;

CREATE OR REPLACE VIEW @extschema@.state_counts AS
SELECT s.state, coalesce(d.repositories, 0)::bigint AS repositories
  FROM unnest(enum_range(NULL::@extschema@.migration_state)) AS s(state)
  LEFT JOIN (SELECT state, sum(delta) AS repositories
               FROM @extschema@.state_count_deltas GROUP BY state) AS d ON d.state = s.state
 ORDER BY s.state;

-- Progress. The rate is measured over the last hour: the repositories that
-- reached a final state in it, divided by the time that hour's work really
-- covers — from when the first of them began its work (the start of its
-- pre-import, else of its import, else its finish), never further back
-- than the hour. A migration started 30 seconds ago is measured over those 30
-- seconds, not over an hour or a minute; one that has run for longer, over
-- the hour. The counts come from the deltas; the rate reads the finishes of
-- the last hour through the two partial indexes on the finish times, so it
-- costs what finished in that hour.
CREATE OR REPLACE VIEW @extschema@.progress AS
WITH finishes AS (
    SELECT import_done_at AS at,
           coalesce(pre_import_started_at, import_started_at, import_done_at) AS began
      FROM @extschema@.repositories
     WHERE state = 'import_done' AND import_done_at > now() - interval '1 hour'
    UNION ALL
    SELECT skipped_at, coalesce(pre_import_started_at, import_started_at, skipped_at)
      FROM @extschema@.repositories
     WHERE state = 'import_skipped' AND skipped_at > now() - interval '1 hour'),
recent AS (
    -- At least a second, so that a finish this very instant divides by something.
    SELECT count(*) AS finished,
           greatest(extract(epoch FROM now() - greatest(least(min(began), min(at)),
                                                        now() - interval '1 hour')), 1) AS seconds
      FROM finishes),
counts AS (
    SELECT coalesce(sum(delta) FILTER (WHERE state = 'import_done'), 0)::bigint AS done,
           coalesce(sum(delta) FILTER (WHERE state = 'import_skipped'), 0)::bigint AS skipped,
           coalesce(sum(delta) FILTER (WHERE state IN ('default', 'import_aborted')), 0)::bigint
               AS remaining,
           coalesce(sum(delta) FILTER (WHERE state IN ('pre_importing', 'pre_import_done', 'importing')),
                    0)::bigint AS in_process
      FROM @extschema@.state_count_deltas)
SELECT c.done, c.skipped, c.remaining, c.in_process,
       round(r.finished * 3600 / r.seconds, 1) AS recent_rate_per_hour,
       CASE WHEN c.remaining + c.in_process = 0 THEN interval '0'
            WHEN r.finished > 0
            THEN make_interval(secs => round((c.remaining + c.in_process) * r.seconds / r.finished))
       END AS estimated_time_to_finish
  FROM counts AS c, recent AS r;

-- The same cycles as procedures, for CALL outside a transaction block: they
-- commit after each repository, so a row is locked only while the registry's
-- answer about it is applied, never while the registry is being asked. They
-- cannot carry SET search_path (a procedure with SET cannot commit): the
-- cycle pins the path itself in each of its transactions.
CREATE PROCEDURE @extschema@.guard(INOUT summary jsonb DEFAULT NULL)
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'rm_guard_procedure';

CREATE PROCEDURE @extschema@.enqueue(INOUT summary jsonb DEFAULT NULL)
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'rm_enqueue_procedure';

REVOKE ALL ON PROCEDURE @extschema@.guard(jsonb) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.enqueue(jsonb) FROM PUBLIC;

-- Why repositories were aborted. Every abort spends one of the
-- repository's retries; the event log says who aborted it and what the
-- registry answered, and this view names the reason once for every reader
-- (the postgres_exporter queries, scripts/report). The first matching rule
-- wins:
--   registry_failed, registry_canceled  the registry reported the step failed
--                                       or canceled (notification or status)
--   operator_cancel                     cancel() accepted by the registry
--   long_running                        the guard canceled a long-running step
--   registry_unavailable                the guard could get no answer for twice
--                                       the long-running threshold
--   not_running                         the guard found a stale step the
--                                       registry is not running
--   too_many_imports                    a start answered 429 once too often
--   start_refused                       a start answered 4xx or unusably
--   error                               an error while handling it (every
--                                       retry_failed; the message in detail)
CREATE TYPE @extschema@.abort_reason AS ENUM (
    'registry_failed', 'registry_canceled', 'operator_cancel', 'long_running',
    'registry_unavailable', 'not_running', 'too_many_imports', 'start_refused', 'error');

CREATE VIEW @extschema@.aborts AS
SELECT e.id, e.at, e.repository_id, e.path, e.old_state, e.cause,
       CASE
           WHEN e.event = 'retry_failed' THEN 'error'
           WHEN e.registry_status IN ('pre_import_failed', 'import_failed') THEN 'registry_failed'
           WHEN e.registry_status IN ('pre_import_canceled', 'import_canceled') THEN 'registry_canceled'
           WHEN e.cause = 'admin' AND e.http_status = 202 THEN 'operator_cancel'
           WHEN e.cause = 'guard' AND e.http_status = 202 THEN 'long_running'
           WHEN e.cause = 'guard' AND e.detail LIKE 'registry unavailable %' THEN 'registry_unavailable'
           WHEN e.cause = 'guard' AND e.http_status IS NOT NULL THEN 'not_running'
           WHEN e.http_status = 429 THEN 'too_many_imports'
           WHEN e.http_status IS NOT NULL THEN 'start_refused'
           ELSE 'error'
       END::@extschema@.abort_reason AS reason,
       e.registry_status, e.http_status, e.detail
  FROM @extschema@.events AS e
 WHERE e.event IN ('abort', 'retry_failed');

-- The event log carries the skip reason each change wrote (events written
-- before the upgrade have none), and finds the failure notifications held
-- for confirmation by their own index.
ALTER TABLE @extschema@.events ADD COLUMN skipped_reason @extschema@.skip_reason;
CREATE INDEX events_failure_pending ON @extschema@.events (at)
    WHERE event = 'failure_pending';

-- worker_status gains the worker's counters, at the end of its columns. The
-- columns of the function behind it change, which only DROP and CREATE can
-- do, and the view goes with it. The grants on both (an operator's SELECT on
-- the view needs EXECUTE on the function too), and those on single columns
-- of the view, are read first and given again. Given in this script they
-- would become the extension's initial
-- privileges, which pg_dump leaves out, so those are put back to what a
-- fresh install records: the grants stay the operator's, and in a dump.
DO $upgrade$
DECLARE
    view_acl pg_catalog.aclitem[];
    view_owner pg_catalog.oid;
    function_acl pg_catalog.aclitem[];
    function_owner pg_catalog.oid;
    fresh_init_privs pg_catalog.pg_init_privs[];
    column_grants text[];
    grant_item record;
BEGIN
    SELECT relacl, relowner INTO view_acl, view_owner
      FROM pg_catalog.pg_class WHERE oid = '@extschema@.worker_status'::pg_catalog.regclass;
    SELECT proacl, proowner INTO function_acl, function_owner
      FROM pg_catalog.pg_proc WHERE oid = '@extschema@.worker_status_internal()'::pg_catalog.regprocedure;
    -- Every old column is a column of the new view too.
    SELECT pg_catalog.array_agg(pg_catalog.format('GRANT %s (%I) ON TABLE @extschema@.worker_status TO %s%s',
               a.privilege_type, c.attname,
               CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                    ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
               CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END))
      INTO column_grants
      FROM pg_catalog.pg_attribute AS c
     CROSS JOIN LATERAL pg_catalog.aclexplode(c.attacl) AS a
     WHERE c.attrelid OPERATOR(pg_catalog.=) '@extschema@.worker_status'::pg_catalog.regclass
       AND c.attnum OPERATOR(pg_catalog.>) 0 AND NOT c.attisdropped
       AND a.grantee OPERATOR(pg_catalog.<>) view_owner;

    DROP VIEW @extschema@.worker_status;
    DROP FUNCTION @extschema@.worker_status_internal();

    -- As in the install script.
    CREATE FUNCTION @extschema@.worker_status_internal(
            OUT pid integer, OUT database name, OUT activity text, OUT since timestamptz,
            OUT last_guard_at timestamptz, OUT last_guard_ms float8, OUT last_guard_summary text,
            OUT last_enqueue_at timestamptz, OUT last_enqueue_ms float8, OUT last_enqueue_summary text,
            OUT last_error text, OUT last_error_at timestamptz,
            OUT cycles text, OUT answers text, OUT counters_since timestamptz)
        RETURNS SETOF record
        LANGUAGE c VOLATILE
        SET search_path = pg_catalog, @extschema@, pg_temp
        AS 'MODULE_PATHNAME', 'rm_worker_status';
    REVOKE ALL ON FUNCTION @extschema@.worker_status_internal() FROM PUBLIC;

    CREATE VIEW @extschema@.worker_status AS
    SELECT w.pid, w.database, w.activity, w.since, w.last_guard_at, w.last_enqueue_at,
           w.last_error, s.retry_after_until,
           w.last_guard_ms, w.last_guard_summary::jsonb AS last_guard_summary,
           w.last_enqueue_ms, w.last_enqueue_summary::jsonb AS last_enqueue_summary,
           w.last_error_at,
           w.cycles::jsonb AS cycles, w.answers::jsonb AS answers, w.counters_since
      FROM @extschema@.worker_status_internal() AS w
     CROSS JOIN @extschema@.registry_state AS s;

    -- What a fresh install records for the two (and their columns).
    SELECT pg_catalog.array_agg(p) INTO fresh_init_privs
      FROM pg_catalog.pg_init_privs AS p
     WHERE p.objoid OPERATOR(pg_catalog.=) '@extschema@.worker_status'::pg_catalog.regclass
           AND p.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
        OR p.objoid OPERATOR(pg_catalog.=) '@extschema@.worker_status_internal()'::pg_catalog.regprocedure
           AND p.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass;

    -- The old grants, but the owner's own privileges.
    FOR grant_item IN
        SELECT 'TABLE @extschema@.worker_status' AS object, a.privilege_type, a.grantee, a.is_grantable
          FROM pg_catalog.aclexplode(view_acl) AS a
         WHERE a.grantee OPERATOR(pg_catalog.<>) view_owner
        UNION ALL
        SELECT 'FUNCTION @extschema@.worker_status_internal()', a.privilege_type, a.grantee, a.is_grantable
          FROM pg_catalog.aclexplode(function_acl) AS a
         WHERE a.grantee OPERATOR(pg_catalog.<>) function_owner
    LOOP
        EXECUTE pg_catalog.format('GRANT %s ON %s TO %s%s', grant_item.privilege_type, grant_item.object,
            CASE WHEN grant_item.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                 ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(grant_item.grantee)) END,
            CASE WHEN grant_item.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    FOR grant_item IN SELECT g FROM pg_catalog.unnest(column_grants) AS g
    LOOP
        EXECUTE grant_item.g;
    END LOOP;

    DELETE FROM pg_catalog.pg_init_privs AS p
     WHERE p.objoid OPERATOR(pg_catalog.=) '@extschema@.worker_status'::pg_catalog.regclass
           AND p.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
        OR p.objoid OPERATOR(pg_catalog.=) '@extschema@.worker_status_internal()'::pg_catalog.regprocedure
           AND p.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass;
    INSERT INTO pg_catalog.pg_init_privs
    SELECT * FROM pg_catalog.unnest(fresh_init_privs);
END
$upgrade$;
