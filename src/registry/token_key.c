/*
 * token_key.c — the key that signs the registry's tokens, and its file.
 *
 * The key is read once per backend, and again when the setting names
 * another file or when the file changes: a key replaced in place or renamed
 * over (a rotation) is used from the next request on, in the worker too,
 * without a restart. A replacement that cannot be used yet (missing for a
 * moment, half written, not readable by the server) leaves the key in use
 * as it is — the registry refuses that key only if it no longer trusts it,
 * which spends no retry — and is tried again when the file changes once
 * more, its mode and owner included, or RETRY_FAILED_S later.
 */
#include "postgres.h"

#include <sys/stat.h>
#include <time.h>

#include "guc.h"
#include "registry/token_key.h"

/* A replacement that could not be used is read again after this long. */
#define RETRY_FAILED_S 10

/*
 * Which contents the file has: replacing or rewriting it changes one of
 * these, and so does a change of its mode or owner (the status change time).
 */
typedef struct KeyFileVersion
{
	bool		found;
	int			stat_errno;		/* when not found */
	dev_t		device;
	ino_t		inode;
	off_t		size;
	struct timespec modified;
	struct timespec status_changed;
} KeyFileVersion;

static EVP_PKEY *key = NULL;
static char key_id[JWT_KID_LEN];
static char key_path[MAXPGPATH];
static KeyFileVersion key_version;	/* of the file the key in use was read from */
static KeyFileVersion failed_version;	/* the last one that could not be used */
static time_t failed_at;

static KeyFileVersion
key_file_version(const char *path)
{
	KeyFileVersion v;
	struct stat st;

	memset(&v, 0, sizeof(v));
	if (stat(path, &st) != 0)
	{
		v.stat_errno = errno;
		return v;
	}
	v.found = true;
	v.device = st.st_dev;
	v.inode = st.st_ino;
	v.size = st.st_size;
	v.modified = st.st_mtim;
	v.status_changed = st.st_ctim;
	return v;
}

static bool
same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static bool
same_version(const KeyFileVersion *a, const KeyFileVersion *b)
{
	return a->found == b->found && a->stat_errno == b->stat_errno &&
		a->device == b->device && a->inode == b->inode && a->size == b->size &&
		same_time(&a->modified, &b->modified) &&
		same_time(&a->status_changed, &b->status_changed);
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
use_key(EVP_PKEY *loaded, const char *loaded_id, const char *path,
		const KeyFileVersion *version)
{
	EVP_PKEY_free(key);
	key = loaded;
	memcpy(key_id, loaded_id, sizeof(key_id));
	strlcpy(key_path, path, sizeof(key_path));
	key_version = *version;
	memset(&failed_version, 0, sizeof(failed_version));
	failed_at = 0;
}

/*
 * The file of the key in use changed: read the new key. True when it is
 * in use now. A failure is logged once per version of the file.
 */
static bool
follow_rotation(const char *path, const KeyFileVersion *version)
{
	char		new_id[JWT_KID_LEN];
	char		err[256];
	EVP_PKEY   *loaded;
	bool		again = failed_at != 0 && same_version(version, &failed_version);

	if (again && time(NULL) < failed_at + RETRY_FAILED_S)
		return false;
	loaded = version->found ? load_key(path, new_id, err, sizeof(err)) : NULL;
	if (loaded != NULL)
	{
		use_key(loaded, new_id, path, version);
		return true;
	}
	if (!version->found)
		snprintf(err, sizeof(err), "%s", strerror(version->stat_errno));
	if (!again)
		ereport(LOG,
				(errmsg("registry_migration: the key file \"%s\" changed but cannot be used; "
						"the key read before stays in use", path),
				 errdetail("Key file \"%s\": %s.", path, err)));
	failed_version = *version;
	failed_at = time(NULL);
	return false;
}

EVP_PKEY *
token_signing_key(const char **kid, bool *replaced)
{
	const char *path = rm_jwt_private_key_file;
	KeyFileVersion version = key_file_version(path);
	char		new_id[JWT_KID_LEN];
	char		err[256];
	EVP_PKEY   *loaded;

	*replaced = false;
	if (key != NULL && strcmp(path, key_path) == 0)
	{
		if (!same_version(&version, &key_version))
			*replaced = follow_rotation(path, &version);
	}
	else
	{
		/* No key yet, or the setting names another file: nothing to fall back on. */
		loaded = load_key(path, new_id, err, sizeof(err));
		if (loaded == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("could not use registry_migration.jwt_private_key_file"),
					 errdetail("Key file \"%s\": %s.", path, err)));
		use_key(loaded, new_id, path, &version);
		*replaced = true;
	}
	*kid = key_id;
	return key;
}
