/*
 * token.c — building, signing and caching the registry's JWTs.
 *
 * The import-API token has the same scope for every call, so it is reused
 * until shortly before it expires, or until the key or the claims' settings
 * change; a tag-list token names one repository, so it is made for each
 * listing. The key itself is token_key.c's.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/json.h"

#include <time.h>

#include "guc.h"
#include "core/jwt.h"
#include "registry/token.h"
#include "registry/token_key.h"

/* A token is renewed when less than this many seconds of it remain. */
#define RENEW_MARGIN_S 30

/* The settings the claims are made of; a token outlives none of their changes. */
typedef struct TokenClaims
{
	char		issuer[256];
	char		audience[256];
	int			lifetime;
} TokenClaims;

static TokenClaims claims_for;
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
current_claims(TokenClaims *c)
{
	memset(c, 0, sizeof(*c));
	strlcpy(c->issuer, rm_jwt_issuer, sizeof(c->issuer));
	strlcpy(c->audience, rm_jwt_audience, sizeof(c->audience));
	c->lifetime = rm_jwt_token_lifetime_s;
}

/* The key to sign with; tokens made with another key or other claims are dropped. */
static EVP_PKEY *
signing_key(const char **kid)
{
	TokenClaims now;
	bool		replaced;
	EVP_PKEY   *key = token_signing_key(kid, &replaced);

	current_claims(&now);
	if (replaced || memcmp(&now, &claims_for, sizeof(now)) != 0)
	{
		forget_tokens();
		claims_for = now;
	}
	return key;
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

/* Sign a token for access_json with key; malloc'd. */
static char *
sign(EVP_PKEY *key, const char *kid, time_t now, const char *access_json)
{
	char		err[256];
	char	   *claims = claims_json(now, access_json);
	char	   *token = jwt_sign_rs256(key, kid, claims, err, sizeof(err));

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
	const char *kid;
	EVP_PKEY   *key;

	if (rm_jwt_private_key_file == NULL || rm_jwt_private_key_file[0] == '\0')
		return NULL;
	key = signing_key(&kid);

	if (call == CALL_TAGS)
	{
		StringInfoData access;

		initStringInfo(&access);
		appendStringInfoString(&access, "[{\"type\":\"repository\",\"name\":");
		escape_json(&access, path);
		appendStringInfoString(&access, ",\"actions\":[\"pull\"]}]");
		free(repository_token);
		repository_token = NULL;
		repository_token = sign(key, kid, now, access.data);
		pfree(access.data);
		return repository_token;
	}

	if (import_token == NULL || now >= import_token_expires - RENEW_MARGIN_S)
	{
		free(import_token);
		import_token = NULL;
		import_token = sign(key, kid, now, "[{\"type\":\"registry\",\"name\":\"import\",\"actions\":[\"*\"]}]");
		import_token_expires = now + rm_jwt_token_lifetime_s;
	}
	return import_token;
}
