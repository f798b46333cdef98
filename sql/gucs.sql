--
-- gucs: the registry_migration.* configuration parameters: defaults,
-- contexts, validation when set (check hooks and ranges), reserved prefix.
--
-- The file passes on a plain cluster and on a server configured for the
-- extension alike (preloaded, settings in postgresql.conf or written by
-- ALTER SYSTEM): it shows the defaults, never the values in force, and it
-- writes nothing to the server's configuration.
--
\set SHOW_CONTEXT never

-- Without preloading, the settings exist once the library is loaded (with
-- it, LOAD changes nothing).
LOAD 'registry_migration';
SELECT 'registry_migration' IN (
         SELECT regexp_replace(btrim(lib, ' "'), '^\$libdir/', '')
           FROM unnest(string_to_array(current_setting('shared_preload_libraries'), ',')) AS lib)
       AS preloaded \gset

-- The defaults (boot values), with context, unit and range: registry_url
-- superuser (SUSET); jwt_*, the TLS files, proxy, worker_enabled, the
-- intervals and log_level sighup; the request settings user. (database and
-- worker_role, which exist only when the library is preloaded, follow.)
SELECT name, unit, context, vartype, min_val, max_val, boot_val
  FROM pg_settings
 WHERE name LIKE 'registry_migration.%'
   AND name NOT IN ('registry_migration.database', 'registry_migration.worker_role')
 ORDER BY name;
-- A setting the server's configuration leaves alone has its default.
SELECT name, setting, boot_val FROM pg_settings
 WHERE name LIKE 'registry_migration.%' AND source = 'default' AND setting <> boot_val;
-- The worker's database (default postgres) and role (default empty: the
-- bootstrap superuser) are restart-only settings, defined exactly when the
-- library is preloaded: a postmaster setting can be defined only then.
SELECT count(*) = CASE WHEN :'preloaded'::boolean THEN 2 ELSE 0 END AS defined_when_preloaded,
       count(*) FILTER (WHERE context = 'postmaster' AND vartype = 'string'
                          AND boot_val = CASE name WHEN 'registry_migration.database'
                                                   THEN 'postgres' ELSE '' END) = count(*)
           AS restart_only_with_defaults
  FROM pg_settings
 WHERE name IN ('registry_migration.database', 'registry_migration.worker_role');
-- The defaults, in the units the parameters are documented in.
CREATE FUNCTION pg_temp.default_of(parameter text) RETURNS text LANGUAGE sql AS $$
    SELECT boot_val || coalesce(unit, '') FROM pg_settings
     WHERE name = 'registry_migration.' || parameter
$$;
SELECT pg_temp.default_of('registry_url') = '' AS registry_url_empty,
       pg_temp.default_of('jwt_private_key_file') = '' AS key_file_empty,
       pg_temp.default_of('jwt_token_lifetime')::interval = '5 min' AS lifetime_5min,
       pg_temp.default_of('connect_timeout')::interval = '2000 ms' AS connect_2000ms,
       pg_temp.default_of('request_timeout')::interval = '10000 ms' AS request_10000ms,
       pg_temp.default_of('guard_interval')::interval = '60 s' AS guard_60s,
       pg_temp.default_of('enqueue_interval')::interval = '10 s' AS enqueue_10s;
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
-- (What postgresql.auto.conf holds before, to compare with after.)
CREATE TEMP TABLE auto_conf_before AS
SELECT name, setting FROM pg_file_settings
 WHERE name LIKE 'registry_migration.%' AND sourcefile LIKE '%/postgresql.auto.conf';
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
-- Nothing was written to postgresql.auto.conf: it holds what it held.
-- (That accepted values are written is tested on a cluster of the tests'
-- own, in test/t/027_tls.pl and test/t/050_worker.pl: this file may run on
-- a DBA's server.)
WITH after AS (
    SELECT name, setting FROM pg_file_settings
     WHERE name LIKE 'registry_migration.%' AND sourcefile LIKE '%/postgresql.auto.conf')
SELECT count(*) AS auto_conf_changes
  FROM ((TABLE auto_conf_before EXCEPT ALL TABLE after)
        UNION ALL (TABLE after EXCEPT ALL TABLE auto_conf_before)) AS changed;

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
-- RESET goes back to the server's value (the default, unless configured).
SELECT name, setting = reset_val AS reset_to_server_value FROM pg_settings
 WHERE name IN ('registry_migration.connect_timeout', 'registry_migration.request_timeout',
                'registry_migration.max_concurrent_requests')
 ORDER BY name;

-- The prefix is reserved: an unknown registry_migration.* name is refused.
\set VERBOSITY default
SET registry_migration.foo = 1;
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('registry_migration.registry_ur', 'x', false);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
-- database cannot be set in a session: without preloading it is unknown
-- (the prefix is reserved), with it a restart-only setting.
SELECT pg_temp.try_set('registry_migration.database', 'postgres')
       = CASE WHEN :'preloaded'::boolean
              THEN '55P02 parameter "registry_migration.database" cannot be changed without restarting the server'
              ELSE '42602 invalid configuration parameter name "registry_migration.database" / "registry_migration" is a reserved prefix.'
         END AS database_refused;

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
SELECT current_setting('registry_migration.jwt_issuer') IS NOT NULL AS jwt_issuer_readable,
       current_setting('registry_migration.ca_file') IS NOT NULL AS ca_file_readable;
RESET ROLE;
RESET registry_migration.connect_timeout;
DROP OWNED BY regress_rm_guc_user;
DROP ROLE regress_rm_guc_user;
