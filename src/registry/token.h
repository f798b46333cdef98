/*
 * token.h — the bearer tokens the registry requests carry.
 */
#ifndef RM_TOKEN_H
#define RM_TOKEN_H

#include "postgres.h"

#include "core/registry_api.h"

/*
 * The token for a call on path, or NULL when no key is configured
 * (registry_migration.jwt_private_key_file is empty). The import-API token
 * is reused until shortly before it expires. The result stays valid until
 * the next call of registry_token().
 */
extern const char *registry_token(RegistryCall call, const char *path);

#endif
