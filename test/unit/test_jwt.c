/*
 * test_jwt.c — base64url, base32, the libtrust key id and RS256 signatures,
 * checked against independent values and OpenSSL's verifier; key files
 * that must be refused without blocking.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/jwt.h"
#include "unit.h"

#ifndef FIXTURES
#define FIXTURES "test/fixtures"
#endif

static void
check_base64url(const char *in, size_t len, const char *want)
{
	char	   *got = base64url_encode((const unsigned char *) in, len);

	CHECK_STR_EQ(got, want, "base64url of %zu bytes", len);
	free(got);
}

static void
test_encodings(void)
{
	char		b32[64];

	/* RFC 4648 test vectors, without padding, with the URL alphabet. */
	check_base64url("", 0, "");
	check_base64url("f", 1, "Zg");
	check_base64url("fo", 2, "Zm8");
	check_base64url("foo", 3, "Zm9v");
	check_base64url("foobar", 6, "Zm9vYmFy");
	check_base64url("\xfb\xff\xbf", 3, "-_-_");
	base32_encode((const unsigned char *) "f", 1, b32);
	CHECK_STR_EQ(b32, "MY", "base32 of f");
	base32_encode((const unsigned char *) "fooba", 5, b32);
	CHECK_STR_EQ(b32, "MZXW6YTB", "base32 of fooba");
	base32_encode((const unsigned char *) "foobar", 6, b32);
	CHECK_STR_EQ(b32, "MZXW6YTBOI", "base32 of foobar");
}

/* Decode base64url into a malloc'd buffer (test-side, via OpenSSL's decoder). */
static unsigned char *
base64url_decode(const char *in, size_t len, size_t *outlen)
{
	size_t		padded = (len + 3) / 4 * 4;
	char	   *std = calloc(padded + 1, 1);
	unsigned char *out = malloc(padded);
	int			n;

	for (size_t i = 0; i < padded; i++)
		std[i] = i < len ? (in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i]) : '=';
	n = EVP_DecodeBlock(out, (unsigned char *) std, (int) padded);
	*outlen = n - (padded - len);
	free(std);
	return out;
}

static bool
verify(EVP_PKEY *key, const char *token)
{
	const char *dot2 = strrchr(token, '.');
	size_t		siglen;
	unsigned char *sig = base64url_decode(dot2 + 1, strlen(dot2 + 1), &siglen);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool		ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
		EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *) token,
						 (size_t) (dot2 - token)) == 1;

	EVP_MD_CTX_free(ctx);
	free(sig);
	return ok;
}

static void
test_signature(void)
{
	char		err[256];
	char		kid[JWT_KID_LEN];
	EVP_PKEY   *key = jwt_load_private_key(FIXTURES "/jwt_test_key.pem", err, sizeof(err));
	FILE	   *pub_file = fopen(FIXTURES "/jwt_test_key.pub.pem", "r");
	EVP_PKEY   *pub = pub_file ? PEM_read_PUBKEY(pub_file, NULL, NULL, NULL) : NULL;
	char	   *token;
	size_t		len;
	unsigned char *part;

	if (pub_file)
		fclose(pub_file);
	if (!CHECK(key != NULL && pub != NULL, "the fixture key pair loads (%s)", err))
		return;

	/* The key id computed outside the project (test/fixtures/README.md). */
	CHECK(jwt_key_id(key, kid), "key id computed");
	CHECK_STR_EQ(kid, "TRJE:CMEV:KB44:TUV2:AD37:3C55:HLMA:PBOB:W4PW:GAC6:4NUV:GYFX", "libtrust key id");

	token = jwt_sign_rs256(key, kid, "{\"iss\":\"x\"}", err, sizeof(err));
	if (CHECK(token != NULL, "token signed (%s)", err))
	{
		CHECK(verify(pub, token), "OpenSSL verifies the signature with the public key");
		part = base64url_decode(token, strchr(token, '.') - token, &len);
		CHECK(len > 0 && strncmp((char *) part, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"TRJE:", 39) == 0,
			  "header names RS256 and the kid: %.*s", (int) len, part);
		free(part);
		/* A changed claim no longer verifies. */
		token[strchr(token, '.') - token + 2] ^= 1;
		CHECK(!verify(pub, token), "a tampered token fails verification");
		free(token);
	}
	EVP_PKEY_free(key);
	EVP_PKEY_free(pub);
}

static void
test_bad_keys(void)
{
	char		err[256] = "";
	char		path[] = "/tmp/rm_unit_keyXXXXXX";
	int			fd = mkstemp(path);
	FILE	   *f = fdopen(fd, "w");
	EVP_PKEY   *ec = EVP_EC_gen("P-256");

	CHECK(jwt_load_private_key("/nonexistent/key.pem", err, sizeof(err)) == NULL, "missing file");
	CHECK_CONTAINS(err, "could not open", "missing file reason");

	PEM_write_PrivateKey(f, ec, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	CHECK(jwt_load_private_key(path, err, sizeof(err)) == NULL, "an EC key is refused");
	CHECK_CONTAINS(err, "RSA", "EC key reason");

	f = fopen(path, "w");
	fputs("not a key\n", f);
	fclose(f);
	CHECK(jwt_load_private_key(path, err, sizeof(err)) == NULL, "garbage is refused");
	unlink(path);
	EVP_PKEY_free(ec);
}

/* A key file is read only if it is a regular file of bounded size, without blocking. */
static void
test_key_file_kinds(void)
{
	char		err[256] = "";
	char		dir[] = "/tmp/rm_unit_keydirXXXXXX";
	char		fifo[300];
	char		big[300];
	char		link[300];
	char		encrypted[300];
	char		target[PATH_MAX];
	size_t		len = 0;
	char	   *contents;
	FILE	   *f;
	EVP_PKEY   *rsa = EVP_RSA_gen(2048);

	if (!CHECK(mkdtemp(dir) != NULL, "a temporary directory"))
		return;
	snprintf(fifo, sizeof(fifo), "%s/fifo.pem", dir);
	snprintf(big, sizeof(big), "%s/big.pem", dir);
	snprintf(link, sizeof(link), "%s/link.pem", dir);
	snprintf(encrypted, sizeof(encrypted), "%s/encrypted.pem", dir);

	/* A FIFO without a writer: refused at once (the alarm ends a hang as a failure). */
	CHECK(mkfifo(fifo, 0600) == 0, "mkfifo");
	alarm(10);
	CHECK(jwt_load_private_key(fifo, err, sizeof(err)) == NULL, "a FIFO is refused");
	alarm(0);
	CHECK_CONTAINS(err, "it is a FIFO, not a regular file", "FIFO reason");

	CHECK(jwt_load_private_key(dir, err, sizeof(err)) == NULL, "a directory is refused");
	CHECK_CONTAINS(err, "directory, not a regular file", "directory reason");
	CHECK(jwt_load_private_key("/dev/zero", err, sizeof(err)) == NULL, "a device is refused");
	CHECK_CONTAINS(err, "character device, not a regular file", "device reason");

	/* Over the size limit: refused without reading it. */
	f = fopen(big, "w");
	CHECK(f != NULL && ftruncate(fileno(f), JWT_KEY_FILE_MAX + 1) == 0, "a large sparse file");
	fclose(f);
	CHECK(jwt_load_private_key(big, err, sizeof(err)) == NULL, "a file over the limit is refused");
	CHECK_CONTAINS(err, "larger than", "size reason");
	f = fopen(big, "w");
	fputs("exactly this", f);
	fclose(f);
	contents = jwt_read_key_file(big, &len, err, sizeof(err));
	CHECK_STR_EQ(contents, "exactly this", "a small regular file is read whole");
	CHECK_INT_EQ(len, 12, "its length");
	free(contents);

	/* A symbolic link to a regular file is fine (FIXTURES may be relative). */
	if (CHECK(realpath(FIXTURES "/jwt_test_key.pem", target) != NULL && symlink(target, link) == 0,
			  "a link to the fixture key"))
	{
		EVP_PKEY   *key = jwt_load_private_key(link, err, sizeof(err));

		CHECK(key != NULL, "a symbolic link to the key loads (%s)", err);
		EVP_PKEY_free(key);
	}

	/* An encrypted key is refused, never prompted for. */
	f = fopen(encrypted, "w");
	PEM_write_PrivateKey(f, rsa, EVP_aes_128_cbc(), (unsigned char *) "secret", 6, NULL, NULL);
	fclose(f);
	CHECK(jwt_load_private_key(encrypted, err, sizeof(err)) == NULL, "an encrypted key is refused");
	CHECK_CONTAINS(err, "unencrypted RSA", "encrypted key reason");

	unlink(fifo);
	unlink(big);
	unlink(link);
	unlink(encrypted);
	rmdir(dir);
	EVP_PKEY_free(rsa);
}

void
test_jwt(void)
{
	test_encodings();
	test_signature();
	test_bad_keys();
	test_key_file_kinds();
}
