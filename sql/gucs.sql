--
-- gucs: the registry_migration.* configuration parameters (all but database,
-- which exists only when the library is preloaded): defaults, contexts,
-- validation when set (check hooks and ranges), reserved prefix.
--
\set SHOW_CONTEXT never

-- The library is not preloaded here: the settings exist once it is loaded.
LOAD 'registry_migration';

-- Defaults.
SHOW registry_migration.registry_url;
SHOW registry_migration.jwt_private_key_file;
SHOW registry_migration.jwt_issuer;
SHOW registry_migration.jwt_audience;
SHOW registry_migration.jwt_token_lifetime;
SHOW registry_migration.connect_timeout;
SHOW registry_migration.request_timeout;
SHOW registry_migration.max_concurrent_requests;
SHOW registry_migration.ca_file;
SHOW registry_migration.client_cert_file;
SHOW registry_migration.client_key_file;
SHOW registry_migration.proxy;
SHOW registry_migration.worker_enabled;
SHOW registry_migration.guard_interval;
SHOW registry_migration.enqueue_interval;
SHOW registry_migration.log_level;

-- The same from pg_settings, with context, unit, range and boot value:
-- registry_url superuser (SUSET); jwt_*, the TLS files, proxy,
-- worker_enabled, the intervals and log_level sighup; the request settings
-- user.
SELECT name, setting, unit, context, vartype, min_val, max_val, boot_val
  FROM pg_settings WHERE name LIKE 'registry_migration.%' ORDER BY name;
-- The defaults, in the units the parameters are documented in.
SELECT current_setting('registry_migration.registry_url') = '' AS registry_url_empty,
       current_setting('registry_migration.jwt_private_key_file') = '' AS key_file_empty,
       current_setting('registry_migration.jwt_token_lifetime')::interval = '5 min' AS lifetime_5min,
       current_setting('registry_migration.connect_timeout')::interval = '2000 ms' AS connect_2000ms,
       current_setting('registry_migration.request_timeout')::interval = '10000 ms' AS request_10000ms,
       current_setting('registry_migration.guard_interval')::interval = '60 s' AS guard_60s,
       current_setting('registry_migration.enqueue_interval')::interval = '10 s' AS enqueue_10s;
-- log_level's accepted values.
SELECT enumvals FROM pg_settings WHERE name = 'registry_migration.log_level';

-- Sets a setting for the session; 'ok' or SQLSTATE, message and detail.
CREATE FUNCTION pg_temp.try_set(name text, value text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    PERFORM set_config(name, value, false);
    RETURN 'ok -> ' || current_setting(name);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ' ' || SQLERRM || coalesce(' / ' || nullif(detail, ''), '');
END $$;

-- registry_url: empty, or an http/https URL with a host, without
-- credentials, query or fragment. Refusals are 22023 with a detail.
SELECT v AS value, pg_temp.try_set('registry_migration.registry_url', v) AS result
  FROM unnest(ARRAY['', 'http://127.0.0.1:5000', 'https://registry.example.com',
                    'http://registry.example.com:5000/prefix/', 'https://[::1]:5000',
                    'ftp://registry.example.com', 'file:///etc/passwd',
                    'http://user:secret@registry.example.com', 'http://user@registry.example.com',
                    'http://registry.example.com/?x=1', 'http://registry.example.com/?',
                    'http://registry.example.com/#frag']) AS v;
-- Garbage is refused too (the detail is libcurl's parser message, so only
-- the SQLSTATE and message are shown).
SELECT v AS value, split_part(pg_temp.try_set('registry_migration.registry_url', v), ' / ', 1) AS result
  FROM unnest(ARRAY['garbage', 'registry.example.com:5000', 'http://', ' http://x',
                    'http://x:99999']) AS v;
-- A refused value leaves the previous one in place.
SET registry_migration.registry_url = 'http://127.0.0.1:5000';
SELECT pg_temp.try_set('registry_migration.registry_url', 'ftp://x') AS result;
SHOW registry_migration.registry_url;
RESET registry_migration.registry_url;
\set VERBOSITY default
SET registry_migration.registry_url = 'ftp://registry.example.com';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse

-- Sighup settings cannot be SET in a session: 55P02.
SELECT n AS setting, pg_temp.try_set('registry_migration.' || n, v) AS result
  FROM (VALUES ('jwt_private_key_file', ''), ('jwt_issuer', 'x'), ('jwt_audience', 'x'),
               ('jwt_token_lifetime', '600'), ('ca_file', ''), ('client_cert_file', ''),
               ('client_key_file', ''), ('proxy', ''), ('worker_enabled', 'off'),
               ('guard_interval', '30s'), ('enqueue_interval', '5s'),
               ('log_level', 'info')) AS s(n, v);
\set VERBOSITY default
SET registry_migration.jwt_private_key_file = '/nonexistent.pem';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse

-- Their values are still validated when set (ALTER SYSTEM checks the value
-- before writing anything; every value below is refused, so nothing is
-- written): ranges, log_level's levels, the key file, non-empty issuer.
\set VERBOSITY default
ALTER SYSTEM SET registry_migration.guard_interval = 0;
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.enqueue_interval = -1;
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.jwt_token_lifetime = 0;
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.log_level = 'junk';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.log_level = 'error';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.worker_enabled = 'maybe';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.jwt_private_key_file = 'relative/key.pem';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.jwt_private_key_file = '/nonexistent/key.pem';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.jwt_issuer = '';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.jwt_audience = '';
\echo :LAST_ERROR_SQLSTATE
-- A device is refused before it is read, even a harmless one.
ALTER SYSTEM SET registry_migration.jwt_private_key_file = '/dev/null';
\echo :LAST_ERROR_SQLSTATE
-- The TLS files: absolute paths of readable regular files (what they hold
-- is checked too: test/t/027_tls.pl).
ALTER SYSTEM SET registry_migration.ca_file = 'relative/ca.pem';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.client_cert_file = '/nonexistent/client.pem';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.client_key_file = '/dev/null';
\echo :LAST_ERROR_SQLSTATE
-- The proxy: scheme://host:port, http, https, socks5 or socks5h, nothing else.
ALTER SYSTEM SET registry_migration.proxy = 'ftp://proxy.example.com:21';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.proxy = 'http://proxy.example.com';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.proxy = 'http://user@proxy.example.com:3128';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.proxy = 'http://proxy.example.com:3128/path';
\echo :LAST_ERROR_SQLSTATE
ALTER SYSTEM SET registry_migration.proxy = 'proxy.example.com:3128';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
-- Nothing was written to postgresql.auto.conf (this expects a test cluster
-- whose postgresql.auto.conf has no registry_migration.* entry).
SELECT count(*) = 0 AS auto_conf_clean FROM pg_file_settings
 WHERE name LIKE 'registry_migration.%' AND sourcefile LIKE '%/postgresql.auto.conf' \gset
\echo auto_conf_clean: :auto_conf_clean

-- log_level accepts its levels: ALTER SYSTEM writes them, and the entry is
-- removed again at once; the server is not reloaded, so nothing takes
-- effect. (Skipped on a cluster that has its own entries there.)
\if :auto_conf_clean
ALTER SYSTEM SET registry_migration.log_level = 'info';
ALTER SYSTEM SET registry_migration.log_level = 'debug1';
ALTER SYSTEM SET registry_migration.log_level = 'warning';
-- And the proxy kinds.
ALTER SYSTEM SET registry_migration.proxy = 'socks5h://[::1]:1080';
ALTER SYSTEM SET registry_migration.proxy = 'https://proxy.example.com:3128/';
SELECT name, setting, error FROM pg_file_settings
 WHERE name LIKE 'registry_migration.%' AND sourcefile LIKE '%/postgresql.auto.conf'
 ORDER BY name;
ALTER SYSTEM RESET registry_migration.log_level;
ALTER SYSTEM RESET registry_migration.proxy;
SELECT count(*) AS auto_conf_entries FROM pg_file_settings
 WHERE name LIKE 'registry_migration.%' AND sourcefile LIKE '%/postgresql.auto.conf';
\endif

-- The user settings: ranges (0 or negative refused with 22023), units.
SELECT n AS setting, v AS value, pg_temp.try_set('registry_migration.' || n, v) AS result
  FROM (VALUES ('connect_timeout', '0'), ('connect_timeout', '-1'), ('connect_timeout', '1'),
               ('connect_timeout', '2s'), ('connect_timeout', '1500ms'),
               ('connect_timeout', 'soon'), ('connect_timeout', '11min'),
               ('request_timeout', '0'), ('request_timeout', '-5'), ('request_timeout', '30s'),
               ('request_timeout', '1h'), ('request_timeout', '2h'),
               ('max_concurrent_requests', '0'), ('max_concurrent_requests', '-1'),
               ('max_concurrent_requests', '1'), ('max_concurrent_requests', '64'),
               ('max_concurrent_requests', '1001')) AS s(n, v);
SET registry_migration.connect_timeout = '2s';
SHOW registry_migration.connect_timeout;
SELECT current_setting('registry_migration.connect_timeout')::interval = '2 s' AS two_seconds;
SET registry_migration.connect_timeout = 1500;
SHOW registry_migration.connect_timeout;
RESET registry_migration.connect_timeout;
RESET registry_migration.request_timeout;
RESET registry_migration.max_concurrent_requests;
SHOW registry_migration.connect_timeout;

-- The prefix is reserved: an unknown registry_migration.* name is refused.
\set VERBOSITY default
SET registry_migration.foo = 1;
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('registry_migration.registry_ur', 'x', false);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
-- (database is only defined when preloaded: here it is unknown, and refused.)
SELECT pg_temp.try_set('registry_migration.database', 'postgres') AS database;

-- Privileges: a role that is not superuser cannot set registry_url (SUSET)
-- nor read jwt_private_key_file (superuser only), but can set the request
-- settings.
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_rm_guc_user;
RESET client_min_messages;
CREATE ROLE regress_rm_guc_user NOLOGIN;
GRANT EXECUTE ON FUNCTION pg_temp.try_set(text, text) TO regress_rm_guc_user;
SET ROLE regress_rm_guc_user;
SELECT pg_temp.try_set('registry_migration.registry_url', 'http://127.0.0.1:5000') AS registry_url;
SELECT pg_temp.try_set('registry_migration.connect_timeout', '3s') AS connect_timeout;
\set VERBOSITY default
SHOW registry_migration.jwt_private_key_file;
\echo :LAST_ERROR_SQLSTATE
SHOW registry_migration.client_key_file;
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SHOW registry_migration.jwt_issuer;
SHOW registry_migration.ca_file;
RESET ROLE;
RESET registry_migration.connect_timeout;
DROP OWNED BY regress_rm_guc_user;
DROP ROLE regress_rm_guc_user;
