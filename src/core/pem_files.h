/*
 * pem_files.h — the PEM files settings name: a CA bundle, a certificate,
 * a private key. Read without blocking and checked before use.
 *
 * No server headers: unit-tested under sanitizers.
 */
#ifndef RM_PEM_FILES_H
#define RM_PEM_FILES_H

#include <stddef.h>

#include <openssl/evp.h>

typedef enum PemFileKind
{
	PEM_CA_BUNDLE,				/* one or more certificates to trust */
	PEM_CERTIFICATE,			/* a certificate, maybe followed by its chain */
	PEM_PRIVATE_KEY,			/* an unencrypted private key of any type */
} PemFileKind;

/* The largest PEM file read; a system CA bundle is a few hundred kilobytes. */
#define PEM_FILE_MAX (4 * 1024 * 1024)

/*
 * The contents of a PEM file of the given kind: read as small_file_read
 * does, then checked to hold what the kind says. malloc'd, *len bytes;
 * free it with small_file_free. NULL with a reason in err (never key
 * material).
 */
extern char *pem_file_read(PemFileKind kind, const char *path, size_t *len,
						   char *err, size_t errlen);

/* The first unencrypted private key in pem[0..len), or NULL; never prompts. */
extern EVP_PKEY *pem_parse_private_key(const char *pem, size_t len);

#endif
