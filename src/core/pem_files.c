/*
 * pem_files.c — checking the PEM files that settings name.
 *
 * A setting's file is checked when the setting is set, so that a wrong
 * file is refused with a reason then, instead of every later request
 * failing with a TLS error that does not say which file is wrong.
 */
#include "core/pem_files.h"
#include "core/small_file.h"

#include <stdbool.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* A passphrase callback that has none: an encrypted key never prompts on a terminal. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void) buf;
	(void) size;
	(void) rwflag;
	(void) u;
	return -1;
}

EVP_PKEY *
pem_parse_private_key(const char *pem, size_t len)
{
	BIO		   *bio = BIO_new_mem_buf(pem, (int) len);
	EVP_PKEY   *key = NULL;

	if (bio != NULL)
		key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	/* The queue is the process's: leave nothing for libcurl to misread. */
	ERR_clear_error();
	return key;
}

/*
 * How many certificates pem[0..len) holds (other PEM blocks, such as a key
 * next to a certificate, and text between blocks are skipped); -1 when a
 * certificate block cannot be read.
 */
static int
count_certificates(const char *pem, size_t len)
{
	BIO		   *bio = BIO_new_mem_buf(pem, (int) len);
	X509	   *cert;
	int			count = 0;
	unsigned long last;

	if (bio == NULL)
		return -1;
	while ((cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL)
	{
		X509_free(cert);
		count++;
	}
	BIO_free(bio);
	/* The loop ends on "no start line" at the end of the text, or on a bad block. */
	last = ERR_peek_last_error();
	ERR_clear_error();
	if (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE)
		return count;
	return -1;
}

/* Whether contents hold what kind says; otherwise the reason in err. */
static bool
holds(PemFileKind kind, const char *contents, size_t len, char *err, size_t errlen)
{
	EVP_PKEY   *key;
	int			certificates;

	if (kind == PEM_PRIVATE_KEY)
	{
		key = pem_parse_private_key(contents, len);
		if (key == NULL)
		{
			snprintf(err, errlen, "it holds no unencrypted private key in PEM format");
			return false;
		}
		EVP_PKEY_free(key);
		return true;
	}
	certificates = count_certificates(contents, len);
	if (certificates < 0)
		snprintf(err, errlen, "it holds a PEM certificate that cannot be read");
	else if (certificates == 0)
		snprintf(err, errlen, "it holds no certificate in PEM format");
	return certificates > 0;
}

char *
pem_file_read(PemFileKind kind, const char *path, size_t *len, char *err, size_t errlen)
{
	size_t		n = 0;
	char	   *contents = small_file_read(path, PEM_FILE_MAX, &n, err, errlen);

	if (contents == NULL)
		return NULL;
	if (!holds(kind, contents, n, err, errlen))
	{
		small_file_free(contents, n);
		return NULL;
	}
	*len = n;
	return contents;
}
