-- The retry decision table written in PL/pgSQL: the baseline the C
-- function registry_migration.retry_decision is measured against.
CREATE FUNCTION bench_retry_decision_plpgsql(
        state registry_migration.migration_state, registry_status text,
        retries_count integer, max_retries integer)
    RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF state IS NULL OR retries_count IS NULL OR max_retries IS NULL THEN
        RAISE EXCEPTION 'argument must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF retries_count < 0 OR max_retries < 0 THEN
        RAISE EXCEPTION 'argument must not be negative' USING ERRCODE = '22023';
    END IF;
    IF state IN ('import_done', 'import_skipped') THEN
        RETURN 'none';
    END IF;
    IF registry_status IS NULL OR registry_status NOT IN ('native',
            'pre_import_in_progress', 'pre_import_complete', 'pre_import_failed',
            'pre_import_canceled', 'import_in_progress', 'import_complete',
            'import_failed', 'import_canceled') THEN
        RETURN 'unknown';
    END IF;
    IF registry_status = 'native' THEN
        RETURN 'finish_import_native';
    END IF;
    IF registry_status = 'pre_import_in_progress' THEN
        RETURN CASE WHEN state = 'pre_importing' THEN 'none' ELSE 'mark_pre_importing' END;
    END IF;
    IF registry_status = 'import_in_progress' THEN
        RETURN CASE WHEN state = 'importing' THEN 'none' ELSE 'mark_importing' END;
    END IF;
    IF registry_status = 'import_complete' THEN
        RETURN 'finish_import';
    END IF;
    IF registry_status = 'pre_import_complete' THEN
        RETURN CASE WHEN state IN ('pre_importing', 'pre_import_done', 'import_aborted')
                    THEN 'start_import' ELSE 'none' END;
    END IF;
    IF state = 'import_aborted' THEN
        IF retries_count >= max_retries THEN
            RETURN 'skip';
        END IF;
        RETURN CASE WHEN registry_status LIKE 'pre_import_%' THEN 'retry_pre_import'
                    ELSE 'retry_import' END;
    END IF;
    IF state IN ('pre_importing', 'pre_import_done', 'importing') THEN
        RETURN 'abort';
    END IF;
    RETURN 'none';
END
$$;

-- 1 M inputs covering every state, every status, and retries around the limit.
CREATE TABLE bench_inputs AS
SELECT (enum_range(NULL::registry_migration.migration_state))[1 + i % 7] AS state,
       (ARRAY['native', 'pre_import_in_progress', 'pre_import_complete',
              'pre_import_failed', 'pre_import_canceled', 'import_in_progress',
              'import_complete', 'import_failed', 'import_canceled', 'error',
              NULL])[1 + (i / 7) % 11] AS registry_status,
       (i / 77) % 5 AS retries_count
  FROM generate_series(0, 999999) AS i;
VACUUM ANALYZE bench_inputs;

-- Both implementations must agree on every input before being timed.
SELECT count(*) AS disagreements
  FROM bench_inputs
 WHERE registry_migration.retry_decision(state, registry_status, retries_count, 3)
       IS DISTINCT FROM bench_retry_decision_plpgsql(state, registry_status, retries_count, 3);
