/*
 * jwt.h — RS256 JSON Web Tokens with OpenSSL.
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

/* The largest key file read; an RSA key in PEM is a few kilobytes. */
#define JWT_KEY_FILE_MAX (1024 * 1024)

/*
 * Load an RSA private key from a PEM file. NULL on failure, with a reason
 * (never key material) in err. Never blocks: see jwt_read_key_file.
 */
extern EVP_PKEY *jwt_load_private_key(const char *path, char *err, size_t errlen);

/*
 * The contents of a key file, read only if it is a regular file of at most
 * JWT_KEY_FILE_MAX bytes, and opened without blocking (a FIFO or a device
 * is refused at once). malloc'd, NUL-terminated, *len bytes; NULL with a
 * reason in err.
 */
extern char *jwt_read_key_file(const char *path, size_t *len, char *err, size_t errlen);

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
