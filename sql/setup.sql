--
-- setup: helpers shared by every regression file. pg_regress runs this file
-- first, in the same database as the others, so they are created once for
-- the whole run. They live in schema regress (not in the extension), and
-- PUBLIC may use them because some files call them under other roles.
--
CREATE SCHEMA regress;
GRANT USAGE ON SCHEMA regress TO PUBLIC;

-- Runs one query: its single value ('(null)' for NULL), or SQLSTATE and
-- message.
CREATE FUNCTION regress.try(cmd text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    result text;
BEGIN
    EXECUTE cmd INTO result;
    RETURN coalesce(result, '(null)');
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;

-- Runs one query: its single value (NULL stays NULL), or SQLSTATE, message
-- and detail.
CREATE FUNCTION regress.try_detail(cmd text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    result text; detail text;
BEGIN
    EXECUTE cmd INTO result;
    RETURN result;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ' ' || SQLERRM || ' / ' || detail;
END $$;

-- Runs one statement and answers 'ok', or its SQLSTATE and message (not the
-- detail: the row a constraint's DETAIL shows holds now()). With keep false
-- a statement that succeeded is rolled back too; with replica true (only
-- together with keep false) triggers are disabled through
-- session_replication_role, so only the constraints judge.
CREATE FUNCTION regress.try_ok(cmd text, keep boolean DEFAULT true,
                               replica boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF replica AND keep THEN
        RAISE EXCEPTION 'replica needs keep false';
    END IF;
    BEGIN
        IF replica THEN
            PERFORM set_config('session_replication_role', 'replica', true);
        END IF;
        EXECUTE cmd;
        IF NOT keep THEN
            RAISE EXCEPTION 'roll back' USING ERRCODE = 'ZZ000';
        END IF;
    EXCEPTION WHEN SQLSTATE 'ZZ000' THEN
        NULL;
    END;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;

SELECT p.oid::regprocedure AS helper
  FROM pg_proc p
 WHERE p.pronamespace = 'regress'::regnamespace
 ORDER BY 1::text;
