/*
 * token_key.h — the key that signs the registry's tokens.
 */
#ifndef RM_TOKEN_KEY_H
#define RM_TOKEN_KEY_H

#include "postgres.h"

#include <openssl/evp.h>

#include "core/jwt.h"

/*
 * The key in registry_migration.jwt_private_key_file (which must be set),
 * and in *kid its key id; both stay valid until the next call. *replaced
 * is set when it is not the key the previous call returned: tokens signed
 * with that one are to be dropped. An error when there is no key to use.
 */
extern EVP_PKEY *token_signing_key(const char **kid, bool *replaced);

#endif
