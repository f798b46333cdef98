-- registry_migration 1.0 -> 1.1: trust boundaries.

\echo Use "ALTER EXTENSION registry_migration UPDATE TO '1.1'" to load this file. \quit

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
