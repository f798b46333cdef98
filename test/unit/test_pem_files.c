/*
 * test_pem_files.c — the PEM files the TLS settings name: what each kind
 * accepts, what it refuses and why, without blocking and without leaving
 * errors in OpenSSL's queue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "core/pem_files.h"
#include "core/small_file.h"
#include "unit.h"

/* A self-signed certificate of key named cn (test-side, with OpenSSL). */
static X509 *
make_certificate(EVP_PKEY *key, const char *cn)
{
	X509	   *cert = X509_new();
	X509_NAME  *name = X509_get_subject_name(cert);

	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
	X509_set_pubkey(cert, key);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *) cn, -1, -1, 0);
	X509_set_issuer_name(cert, name);
	X509_sign(cert, key, EVP_sha256());
	return cert;
}

static void
write_text(const char *path, const char *text)
{
	FILE	   *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
}

/* pem_file_read of kind on path: accepted, or refused with a reason containing why. */
static void
check_kind(PemFileKind kind, const char *path, const char *why, const char *what)
{
	char		err[256] = "";
	size_t		len = 0;
	char	   *contents = pem_file_read(kind, path, &len, err, sizeof(err));

	if (why == NULL)
	{
		CHECK(contents != NULL && len > 0, "%s is accepted (%s)", what, err);
		CHECK(contents == NULL || contents[len] == '\0', "%s is NUL-terminated", what);
	}
	else
	{
		CHECK(contents == NULL, "%s is refused", what);
		CHECK_CONTAINS(err, why, "why %s is refused", what);
	}
	CHECK_INT_EQ(ERR_peek_error(), 0, "OpenSSL's error queue is left empty after %s", what);
	small_file_free(contents, len);
}

void
test_pem_files(void)
{
	char		dir[] = "/tmp/rm_unit_pemXXXXXX";
	char		ca[300], cert[300], key[300], eckey[300], combined[300], empty[300];
	char		garbage[300], broken[300], encrypted[300], fifo[300], big[300];
	EVP_PKEY   *rsa = EVP_RSA_gen(2048);
	EVP_PKEY   *ec = EVP_EC_gen("P-256");
	X509	   *root = make_certificate(rsa, "test root");
	X509	   *other = make_certificate(ec, "other root");
	FILE	   *f;
	size_t		len = 0;
	char	   *contents;
	EVP_PKEY   *parsed;

	if (!CHECK(mkdtemp(dir) != NULL && rsa != NULL && ec != NULL, "a directory and keys"))
		return;
#define IN_DIR(var, name) snprintf(var, sizeof(var), "%s/" name, dir)
	IN_DIR(ca, "ca.pem");
	IN_DIR(cert, "cert.pem");
	IN_DIR(key, "key.pem");
	IN_DIR(eckey, "eckey.pem");
	IN_DIR(combined, "combined.pem");
	IN_DIR(empty, "empty.pem");
	IN_DIR(garbage, "garbage.pem");
	IN_DIR(broken, "broken.pem");
	IN_DIR(encrypted, "encrypted.pem");
	IN_DIR(fifo, "fifo.pem");
	IN_DIR(big, "big.pem");
#undef IN_DIR

	/* A bundle as distributions write them: text between the blocks. */
	f = fopen(ca, "w");
	fputs("# test root\n", f);
	PEM_write_X509(f, root);
	fputs("# other root\n", f);
	PEM_write_X509(f, other);
	fclose(f);
	f = fopen(cert, "w");
	PEM_write_X509(f, root);
	fclose(f);
	f = fopen(key, "w");
	PEM_write_PrivateKey(f, rsa, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	f = fopen(eckey, "w");
	PEM_write_PrivateKey(f, ec, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	/* A key and its certificate in one file, as some deployments keep them. */
	f = fopen(combined, "w");
	PEM_write_PrivateKey(f, rsa, NULL, NULL, 0, NULL, NULL);
	PEM_write_X509(f, root);
	fclose(f);
	write_text(empty, "");
	write_text(garbage, "not PEM at all\n");
	write_text(broken, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n");
	f = fopen(encrypted, "w");
	PEM_write_PrivateKey(f, rsa, EVP_aes_128_cbc(), (unsigned char *) "secret", 6, NULL, NULL);
	fclose(f);

	check_kind(PEM_CA_BUNDLE, ca, NULL, "a bundle of two certificates");
	check_kind(PEM_CA_BUNDLE, cert, NULL, "one certificate as a bundle");
	check_kind(PEM_CERTIFICATE, cert, NULL, "a certificate");
	check_kind(PEM_CERTIFICATE, combined, NULL, "a certificate after its key");
	check_kind(PEM_PRIVATE_KEY, key, NULL, "an RSA key");
	check_kind(PEM_PRIVATE_KEY, eckey, NULL, "an EC key");
	check_kind(PEM_PRIVATE_KEY, combined, NULL, "a key before its certificate");

	check_kind(PEM_CA_BUNDLE, key, "no certificate in PEM format", "a key as a CA file");
	check_kind(PEM_CERTIFICATE, key, "no certificate in PEM format", "a key as a certificate");
	check_kind(PEM_PRIVATE_KEY, cert, "no unencrypted private key", "a certificate as a key");
	check_kind(PEM_CA_BUNDLE, empty, "no certificate in PEM format", "an empty file");
	check_kind(PEM_PRIVATE_KEY, empty, "no unencrypted private key", "an empty key file");
	check_kind(PEM_CA_BUNDLE, garbage, "no certificate in PEM format", "a file that is not PEM");
	check_kind(PEM_CA_BUNDLE, broken, "a PEM certificate that cannot be read", "a broken block");
	check_kind(PEM_PRIVATE_KEY, encrypted, "no unencrypted private key", "an encrypted key");
	check_kind(PEM_CA_BUNDLE, "/nonexistent/ca.pem", "could not open it", "a missing file");
	check_kind(PEM_CA_BUNDLE, dir, "a directory, not a regular file", "a directory");
	check_kind(PEM_CA_BUNDLE, "/dev/zero", "a character device, not a regular file", "a device");

	/* A FIFO without a writer: refused at once (the alarm ends a hang as a failure). */
	CHECK(mkfifo(fifo, 0600) == 0, "mkfifo");
	alarm(10);
	check_kind(PEM_PRIVATE_KEY, fifo, "a FIFO, not a regular file", "a FIFO");
	alarm(0);

	/* Over the size limit: refused without being read. */
	f = fopen(big, "w");
	CHECK(f != NULL && ftruncate(fileno(f), PEM_FILE_MAX + 1) == 0, "a large sparse file");
	fclose(f);
	check_kind(PEM_CA_BUNDLE, big, "larger than", "a file over the limit");

	/* The parsed key is the one written, whichever block comes first. */
	contents = pem_file_read(PEM_PRIVATE_KEY, combined, &len, (char[256]) {0}, 256);
	parsed = contents ? pem_parse_private_key(contents, len) : NULL;
	CHECK(parsed != NULL && EVP_PKEY_eq(parsed, rsa) == 1, "the key of the combined file");
	EVP_PKEY_free(parsed);
	small_file_free(contents, len);

	unlink(ca);
	unlink(cert);
	unlink(key);
	unlink(eckey);
	unlink(combined);
	unlink(empty);
	unlink(garbage);
	unlink(broken);
	unlink(encrypted);
	unlink(fifo);
	unlink(big);
	rmdir(dir);
	X509_free(root);
	X509_free(other);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
}
