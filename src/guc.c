/*
 * guc.c — definition and validation of the registry_migration.* settings.
 *
 * Every string setting has a check hook, so a bad value is refused when it
 * is set (SET, ALTER SYSTEM, a reload) instead of failing later inside a
 * cycle or the background worker.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "guc.h"
#include "core/jwt.h"
#include "core/pem_files.h"
#include "core/small_file.h"
#include "core/url_origin.h"

char	   *rm_registry_url = NULL;
char	   *rm_jwt_private_key_file = NULL;
char	   *rm_jwt_issuer = NULL;
char	   *rm_jwt_audience = NULL;
char	   *rm_ca_file = NULL;
char	   *rm_client_cert_file = NULL;
char	   *rm_client_key_file = NULL;
char	   *rm_proxy = NULL;
int			rm_jwt_token_lifetime_s = 300;
int			rm_connect_timeout_ms = 2000;
int			rm_request_timeout_ms = 10000;
int			rm_max_concurrent_requests = 16;
char	   *rm_database = NULL;
char	   *rm_worker_role = NULL;
bool		rm_worker_role_refused = false;
bool		rm_worker_enabled = true;
int			rm_guard_interval_ms = 60000;
int			rm_enqueue_interval_ms = 10000;
int			rm_log_level = LOG;

static const struct config_enum_entry log_level_options[] = {
	{"debug5", DEBUG5, false},
	{"debug4", DEBUG4, false},
	{"debug3", DEBUG3, false},
	{"debug2", DEBUG2, false},
	{"debug1", DEBUG1, false},
	{"debug", DEBUG2, true},
	{"log", LOG, false},
	{"info", INFO, false},
	{"notice", NOTICE, false},
	{"warning", WARNING, false},
	{NULL, 0, false}
};

/*
 * The registry URL: empty, or an absolute http(s) URL with a host and
 * nothing after the path. Credentials are refused because the URL appears
 * in error messages and logs; authentication goes through the JWT.
 */
static bool
check_registry_url(char **newval, void **extra, GucSource source)
{
	CURLU	   *url;
	CURLUcode	rc;
	char	   *scheme = NULL;
	char	   *part = NULL;
	const char *problem = NULL;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;

	url = curl_url();
	if (url == NULL)
	{
		GUC_check_errdetail("Out of memory while parsing the URL.");
		return false;
	}
	rc = curl_url_set(url, CURLUPART_URL, *newval, CURLU_NON_SUPPORT_SCHEME);
	if (rc != CURLUE_OK)
		problem = curl_url_strerror(rc);
	else if (curl_url_get(url, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
			 (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		problem = "Only http and https URLs are supported.";
	else if (curl_url_get(url, CURLUPART_USER, &part, 0) == CURLUE_OK)
		problem = "The URL must not contain credentials; tokens are configured with registry_migration.jwt_private_key_file.";
	else if (curl_url_get(url, CURLUPART_QUERY, &part, 0) == CURLUE_OK ||
			 curl_url_get(url, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK)
		problem = "The URL must not contain a query or a fragment.";

	curl_free(scheme);
	curl_free(part);
	curl_url_cleanup(url);
	if (problem)
	{
		GUC_check_errdetail("%s", problem);
		return false;
	}
	return true;
}

/* The key file: empty, or a readable PEM file holding an RSA private key. */
static bool
check_jwt_private_key_file(char **newval, void **extra, GucSource source)
{
	char		err[256];
	EVP_PKEY   *key;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (!is_absolute_path(*newval))
	{
		GUC_check_errdetail("The key file must be given as an absolute path.");
		return false;
	}
	key = jwt_load_private_key(*newval, err, sizeof(err));
	if (key == NULL)
	{
		GUC_check_errdetail("Key file \"%s\": %s.", *newval, err);
		return false;
	}
	EVP_PKEY_free(key);
	return true;
}

/*
 * A TLS file: empty, or an absolute path to a file the server can read,
 * holding what kind says. Opened without blocking, like the key file.
 */
static bool
check_pem_file(char **newval, PemFileKind kind, const char *label)
{
	char		err[256];
	size_t		len = 0;
	char	   *contents;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (!is_absolute_path(*newval))
	{
		GUC_check_errdetail("%s \"%s\": it must be given as an absolute path.", label, *newval);
		return false;
	}
	contents = pem_file_read(kind, *newval, &len, err, sizeof(err));
	if (contents == NULL)
	{
		GUC_check_errdetail("%s \"%s\": %s.", label, *newval, err);
		return false;
	}
	small_file_free(contents, len);
	return true;
}

static bool
check_ca_file(char **newval, void **extra, GucSource source)
{
	return check_pem_file(newval, PEM_CA_BUNDLE, "CA file");
}

static bool
check_client_cert_file(char **newval, void **extra, GucSource source)
{
	return check_pem_file(newval, PEM_CERTIFICATE, "Client certificate file");
}

static bool
check_client_key_file(char **newval, void **extra, GucSource source)
{
	return check_pem_file(newval, PEM_PRIVATE_KEY, "Client key file");
}

/* The proxy: empty (none), or scheme://host:port without credentials. */
static bool
check_proxy(char **newval, void **extra, GucSource source)
{
	const char *problem;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	problem = url_proxy_problem(*newval);
	if (problem)
	{
		GUC_check_errdetail("%s", problem);
		return false;
	}
	return true;
}

static bool
check_not_empty(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("The value must not be empty.");
		return false;
	}
	return true;
}

static bool
check_database(char **newval, void **extra, GucSource source)
{
	if (!check_not_empty(newval, extra, source))
		return false;
	if (strlen(*newval) >= NAMEDATALEN)
	{
		GUC_check_errdetail("A database name has at most %d bytes.", NAMEDATALEN - 1);
		return false;
	}
	return true;
}

/*
 * The worker's role: empty (the bootstrap superuser), or a name a role can
 * have. Whether the role exists, can log in and is not a superuser can only
 * be known once connected; the worker reports that itself.
 */
static bool
valid_worker_role(const char *name)
{
	if (name == NULL || name[0] == '\0')
		return true;
	if (strlen(name) >= NAMEDATALEN)
	{
		GUC_check_errdetail("A role name has at most %d bytes.", NAMEDATALEN - 1);
		return false;
	}
	if (strcmp(name, "public") == 0 || strcmp(name, "none") == 0 ||
		strncmp(name, "pg_", 3) == 0)
	{
		GUC_check_errdetail("\"%s\" is reserved and cannot be the name of a role that logs in.", name);
		return false;
	}
	return true;
}

bool
rm_worker_role_named(void)
{
	return rm_worker_role != NULL && rm_worker_role[0] != '\0';
}

/*
 * A value refused while the library is preloaded only gives a WARNING and
 * leaves the default, which is the bootstrap superuser: remember it, so that
 * the worker does not fall back to the very rights the setting avoids.
 */
static bool
check_worker_role(char **newval, void **extra, GucSource source)
{
	bool		valid = valid_worker_role(*newval);

	if (process_shared_preload_libraries_in_progress)
		rm_worker_role_refused = !valid;
	return valid;
}

/* An integer setting: no check hook, its range says what is valid. */
typedef struct IntSetting
{
	const char *name;
	const char *description;
	int		   *variable;
	int			boot;
	int			min;
	int			max;
	GucContext	context;
	int			flags;
} IntSetting;

static const IntSetting registry_int_settings[] = {
	{"registry_migration.jwt_token_lifetime", "Lifetime of a registry token (exp - iat).",
	&rm_jwt_token_lifetime_s, 300, 60, 86400, PGC_SIGHUP, GUC_UNIT_S},
	{"registry_migration.connect_timeout", "Connect timeout of one registry request.",
	&rm_connect_timeout_ms, 2000, 1, 600000, PGC_USERSET, GUC_UNIT_MS},
	{"registry_migration.request_timeout", "Total timeout of one registry request.",
	&rm_request_timeout_ms, 10000, 1, 3600000, PGC_USERSET, GUC_UNIT_MS},
	{"registry_migration.max_concurrent_requests", "Registry requests one cycle may have in flight.",
	&rm_max_concurrent_requests, 16, 1, 1000, PGC_USERSET, 0},
};

static const IntSetting worker_int_settings[] = {
	{"registry_migration.guard_interval", "Period of the background worker's guard cycle.",
	&rm_guard_interval_ms, 60000, 10, 86400000, PGC_SIGHUP, GUC_UNIT_MS},
	{"registry_migration.enqueue_interval", "Period of the background worker's enqueue cycle.",
	&rm_enqueue_interval_ms, 10000, 10, 86400000, PGC_SIGHUP, GUC_UNIT_MS},
};

static void
define_int_settings(const IntSetting *settings, int count)
{
	for (int i = 0; i < count; i++)
		DefineCustomIntVariable(settings[i].name, settings[i].description, NULL,
								settings[i].variable, settings[i].boot,
								settings[i].min, settings[i].max,
								settings[i].context, settings[i].flags, NULL, NULL, NULL);
}

/*
 * How requests reach the registry: whom to trust, what to present, which
 * proxy to go through. Changed by reload only, like the key file: a session
 * that could pick its own CA could hand the token to anyone.
 */
static void
define_transport_settings(void)
{
	DefineCustomStringVariable("registry_migration.ca_file",
							   "CA certificates (PEM) that https registries and proxies are verified with.",
							   "Empty: the system's CA store. Otherwise only these CAs are trusted.",
							   &rm_ca_file, "",
							   PGC_SIGHUP, 0,
							   check_ca_file, NULL, NULL);
	DefineCustomStringVariable("registry_migration.client_cert_file",
							   "Client certificate (PEM) presented to the registry over https.",
							   "Empty: none. Its key is client_key_file, or this file when that is empty.",
							   &rm_client_cert_file, "",
							   PGC_SIGHUP, 0,
							   check_client_cert_file, NULL, NULL);
	DefineCustomStringVariable("registry_migration.client_key_file",
							   "Private key (PEM, unencrypted) of the client certificate.",
							   "Empty: the key is read from client_cert_file.",
							   &rm_client_key_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_client_key_file, NULL, NULL);
	DefineCustomStringVariable("registry_migration.proxy",
							   "Proxy every registry request goes through.",
							   "For example http://proxy.example.com:3128. Empty: no proxy, "
							   "whatever the server's environment says.",
							   &rm_proxy, "",
							   PGC_SIGHUP, 0,
							   check_proxy, NULL, NULL);
}

static void
define_registry_settings(void)
{
	DefineCustomStringVariable("registry_migration.registry_url",
							   "Base URL of the registry's import API.",
							   "For example http://127.0.0.1:5000. Empty: no registry configured.",
							   &rm_registry_url, "",
							   PGC_SUSET, 0,
							   check_registry_url, NULL, NULL);
	DefineCustomStringVariable("registry_migration.jwt_private_key_file",
							   "RSA private key (PEM) that signs the registry tokens.",
							   "Empty: requests carry no token.",
							   &rm_jwt_private_key_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_jwt_private_key_file, NULL, NULL);
	DefineCustomStringVariable("registry_migration.jwt_issuer",
							   "Issuer (iss claim) of the registry tokens.",
							   NULL, &rm_jwt_issuer, "registry_migration",
							   PGC_SIGHUP, 0, check_not_empty, NULL, NULL);
	DefineCustomStringVariable("registry_migration.jwt_audience",
							   "Audience (aud claim) of the registry tokens.",
							   NULL, &rm_jwt_audience, "container_registry",
							   PGC_SIGHUP, 0, check_not_empty, NULL, NULL);
	define_int_settings(registry_int_settings, lengthof(registry_int_settings));
	define_transport_settings();
}

static void
define_worker_settings(void)
{
	/*
	 * A postmaster-level setting can only be defined while the library is
	 * preloaded, which is also the only case in which a worker exists.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomStringVariable("registry_migration.database",
								   "Database the background worker serves.",
								   NULL, &rm_database, "postgres",
								   PGC_POSTMASTER, 0, check_database, NULL, NULL);
		DefineCustomStringVariable("registry_migration.worker_role",
								   "Role the background worker connects as.",
								   "Empty: the bootstrap superuser. Otherwise a LOGIN role "
								   "that is not a superuser and holds the worker's grants.",
								   &rm_worker_role, "",
								   PGC_POSTMASTER, 0, check_worker_role, NULL, NULL);
	}
	DefineCustomBoolVariable("registry_migration.worker_enabled",
							 "Whether the background worker runs cycles.",
							 NULL, &rm_worker_enabled, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	define_int_settings(worker_int_settings, lengthof(worker_int_settings));
	DefineCustomEnumVariable("registry_migration.log_level",
							 "Level of the one-line cycle summaries in the server log.",
							 NULL, &rm_log_level, LOG, log_level_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
}

void
guc_init(void)
{
	define_registry_settings();
	define_worker_settings();
	MarkGUCPrefixReserved("registry_migration");
}
