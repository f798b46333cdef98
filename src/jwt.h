/*
 * jwt.h — RS256 JSON Web Tokens with OpenSSL (SPEC §8.1).
 *
 * No server headers: unit-tested under sanitizers. The caller builds the
 * claims JSON (with the server's JSON escaping); this file encodes, signs,
 * and computes the "libtrust" key id the Docker distribution registry
 * expects in the header's kid.
 */
#ifndef RM_JWT_H
#define RM_JWT_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

/* The key id is 12 groups of 4 characters joined by ':' (59 bytes + NUL). */
#define JWT_KID_LEN 60

/*
 * Load an RSA private key from a PEM file. NULL on failure, with a reason
 * (never key material) in err.
 */
extern EVP_PKEY *jwt_load_private_key(const char *path, char *err, size_t errlen);

/* The libtrust key id of the key's public half. False on failure. */
extern bool jwt_key_id(EVP_PKEY *key, char kid[JWT_KID_LEN]);

/*
 * header.claims.signature, with header {"alg":"RS256","typ":"JWT","kid":...}.
 * Returns a malloc'd token, or NULL with a reason in err.
 */
extern char *jwt_sign_rs256(EVP_PKEY *key, const char *kid, const char *claims_json,
							char *err, size_t errlen);

/* base64url without padding of in[0..len); malloc'd, NULL when out of memory. */
extern char *base64url_encode(const unsigned char *in, size_t len);

/* RFC 4648 base32 without padding of in[0..len) into out (8/5 len + 1 bytes). */
extern void base32_encode(const unsigned char *in, size_t len, char *out);

#endif
