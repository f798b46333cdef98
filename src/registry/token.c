/*
 * token.c — building, signing and caching the registry's JWTs.
 *
 * The key is loaded once per backend, and again when the setting changes
 * or the file does: a key replaced in place (a rotation) is used from the
 * next request on, in the worker too, without a restart. The import-API
 * token has the same scope for every call, so it is reused
 * until shortly before it expires; a tag-list token names one repository,
 * so it is made for each listing.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/json.h"

#include <sys/stat.h>
#include <time.h>

#include "guc.h"
#include "core/jwt.h"
#include "registry/token.h"

/* A token is renewed when less than this many seconds of it remain. */
#define RENEW_MARGIN_S 30

typedef struct TokenSettings
{
	char		key_file[MAXPGPATH];
	char		issuer[256];
	char		audience[256];
	int			lifetime;
} TokenSettings;

/* Which file's contents: a replaced or rewritten file differs in one of these. */
typedef struct KeyFileVersion
{
	bool		found;
	dev_t		device;
	ino_t		inode;
	off_t		size;
	struct timespec modified;
} KeyFileVersion;

static EVP_PKEY *key = NULL;
static char key_id[JWT_KID_LEN];
static TokenSettings cached_for;
static KeyFileVersion key_version;	/* of the file the key was last read from */
static char *import_token = NULL;	/* malloc'd */
static time_t import_token_expires = 0;
static char *repository_token = NULL;	/* malloc'd, the latest tag-list token */

static void
forget_tokens(void)
{
	free(import_token);
	free(repository_token);
	import_token = repository_token = NULL;
	import_token_expires = 0;
}

static void
current_settings(TokenSettings *s)
{
	memset(s, 0, sizeof(*s));
	strlcpy(s->key_file, rm_jwt_private_key_file, sizeof(s->key_file));
	strlcpy(s->issuer, rm_jwt_issuer, sizeof(s->issuer));
	strlcpy(s->audience, rm_jwt_audience, sizeof(s->audience));
	s->lifetime = rm_jwt_token_lifetime_s;
}

static KeyFileVersion
key_file_version(const char *path)
{
	KeyFileVersion v;
	struct stat st;

	memset(&v, 0, sizeof(v));
	if (stat(path, &st) != 0)
		return v;
	v.found = true;
	v.device = st.st_dev;
	v.inode = st.st_ino;
	v.size = st.st_size;
	v.modified = st.st_mtim;
	return v;
}

static bool
same_version(const KeyFileVersion *a, const KeyFileVersion *b)
{
	return a->found == b->found && a->device == b->device && a->inode == b->inode &&
		a->size == b->size && a->modified.tv_sec == b->modified.tv_sec &&
		a->modified.tv_nsec == b->modified.tv_nsec;
}

/* The key in path with its id, or NULL with the reason in err. */
static EVP_PKEY *
load_key(const char *path, char *new_id, char *err, size_t errlen)
{
	EVP_PKEY   *loaded = jwt_load_private_key(path, err, errlen);

	if (loaded != NULL && !jwt_key_id(loaded, new_id))
	{
		EVP_PKEY_free(loaded);
		loaded = NULL;
		strlcpy(err, "could not compute the key id", errlen);
	}
	return loaded;
}

static void
use_key(EVP_PKEY *loaded, const char *loaded_id)
{
	forget_tokens();
	EVP_PKEY_free(key);
	key = loaded;
	memcpy(key_id, loaded_id, sizeof(key_id));
}

/*
 * The key file changed under the same setting: a rotation. Its new key is
 * used from now on. A file caught half-written, or missing for a moment,
 * leaves the key in use as it is (the registry refuses it if it no longer
 * trusts it, which spends no retry), and the next change is read again.
 */
static void
follow_rotation(const char *path, const KeyFileVersion *version)
{
	char		new_id[JWT_KID_LEN];
	char		err[256];
	EVP_PKEY   *loaded;

	key_version = *version;
	loaded = version->found ? load_key(path, new_id, err, sizeof(err)) : NULL;
	if (loaded != NULL)
		use_key(loaded, new_id);
	else
		ereport(LOG,
				(errmsg("registry_migration: the key file \"%s\" changed but cannot be used; "
						"the key read before stays in use", path),
				 errdetail("%s.", version->found ? err : "It cannot be found")));
}

/* (Re)load the key when the settings or the key file changed since the last token. */
static void
refresh_key(void)
{
	TokenSettings now;
	KeyFileVersion version;
	char		new_id[JWT_KID_LEN];
	char		err[256];
	EVP_PKEY   *loaded;

	current_settings(&now);
	version = key_file_version(now.key_file);
	if (key != NULL && memcmp(&now, &cached_for, sizeof(now)) == 0)
	{
		if (!same_version(&version, &key_version))
			follow_rotation(now.key_file, &version);
		return;
	}
	loaded = load_key(now.key_file, new_id, err, sizeof(err));
	if (loaded == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not use registry_migration.jwt_private_key_file"),
				 errdetail("Key file \"%s\": %s.", now.key_file, err)));
	use_key(loaded, new_id);
	key_version = version;
	cached_for = now;
}

static void
append_random_id(StringInfo out)
{
	uint8		bytes[16];

	if (!pg_strong_random(bytes, sizeof(bytes)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random token id")));
	for (int i = 0; i < (int) sizeof(bytes); i++)
		appendStringInfo(out, "%02x", bytes[i]);
}

/* The claims the registry checks; access_json is the "access" array. */
static char *
claims_json(time_t now, const char *access_json)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfoString(&s, "{\"iss\":");
	escape_json(&s, rm_jwt_issuer);
	appendStringInfoString(&s, ",\"aud\":");
	escape_json(&s, rm_jwt_audience);
	appendStringInfo(&s, ",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,\"jti\":\"",
					 (long long) now, (long long) now,
					 (long long) now + rm_jwt_token_lifetime_s);
	append_random_id(&s);
	appendStringInfo(&s, "\",\"access\":%s}", access_json);
	return s.data;
}

/* Sign a token for access_json; malloc'd. */
static char *
sign(time_t now, const char *access_json)
{
	char		err[256];
	char	   *claims = claims_json(now, access_json);
	char	   *token = jwt_sign_rs256(key, key_id, claims, err, sizeof(err));

	pfree(claims);
	if (token == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("%s", err)));
	return token;
}

const char *
registry_token(RegistryCall call, const char *path)
{
	time_t		now = time(NULL);

	if (rm_jwt_private_key_file == NULL || rm_jwt_private_key_file[0] == '\0')
		return NULL;
	refresh_key();

	if (call == CALL_TAGS)
	{
		StringInfoData access;

		initStringInfo(&access);
		appendStringInfoString(&access, "[{\"type\":\"repository\",\"name\":");
		escape_json(&access, path);
		appendStringInfoString(&access, ",\"actions\":[\"pull\"]}]");
		free(repository_token);
		repository_token = NULL;
		repository_token = sign(now, access.data);
		pfree(access.data);
		return repository_token;
	}

	if (import_token == NULL || now >= import_token_expires - RENEW_MARGIN_S)
	{
		free(import_token);
		import_token = NULL;
		import_token = sign(now, "[{\"type\":\"registry\",\"name\":\"import\",\"actions\":[\"*\"]}]");
		import_token_expires = now + rm_jwt_token_lifetime_s;
	}
	return import_token;
}
