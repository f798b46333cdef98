/*
 * jwt.c — RS256 signing and the libtrust key id.
 */
#include "core/jwt.h"
#include "core/pem_files.h"
#include "core/small_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

char *
jwt_read_key_file(const char *path, size_t *len, char *err, size_t errlen)
{
	return small_file_read(path, JWT_KEY_FILE_MAX, len, err, errlen);
}

EVP_PKEY *
jwt_load_private_key(const char *path, char *err, size_t errlen)
{
	size_t		len = 0;
	char	   *pem = jwt_read_key_file(path, &len, err, errlen);
	EVP_PKEY   *key;

	if (pem == NULL)
		return NULL;
	key = pem_parse_private_key(pem, len);
	small_file_free(pem, len);
	if (key == NULL || EVP_PKEY_base_id(key) != EVP_PKEY_RSA)
	{
		EVP_PKEY_free(key);
		snprintf(err, errlen, "not an unencrypted RSA private key in PEM format");
		return NULL;
	}
	return key;
}

char *
base64url_encode(const unsigned char *in, size_t len)
{
	/* EVP_EncodeBlock writes standard base64 with padding and a NUL. */
	char	   *out = malloc(4 * ((len + 2) / 3) + 1);
	int			n;

	if (out == NULL)
		return NULL;
	n = EVP_EncodeBlock((unsigned char *) out, in, (int) len);
	while (n > 0 && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	for (int i = 0; i < n; i++)
	{
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	return out;
}

void
base32_encode(const unsigned char *in, size_t len, char *out)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
	unsigned int buffer = 0;
	int			bits = 0;
	size_t		o = 0;

	for (size_t i = 0; i < len; i++)
	{
		buffer = (buffer << 8) | in[i];
		bits += 8;
		while (bits >= 5)
		{
			out[o++] = alphabet[(buffer >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits > 0)
		out[o++] = alphabet[(buffer << (5 - bits)) & 31];
	out[o] = '\0';
}

bool
jwt_key_id(EVP_PKEY *key, char kid[JWT_KID_LEN])
{
	unsigned char *der = NULL;
	unsigned char digest[SHA256_DIGEST_LENGTH];
	char		b32[49];		/* 30 bytes -> 48 characters */
	int			derlen = i2d_PUBKEY(key, &der);
	size_t		o = 0;

	if (derlen <= 0)
		return false;
	SHA256(der, (size_t) derlen, digest);
	OPENSSL_free(der);
	base32_encode(digest, 30, b32);
	for (int group = 0; group < 12; group++)
	{
		if (group > 0)
			kid[o++] = ':';
		memcpy(kid + o, b32 + 4 * group, 4);
		o += 4;
	}
	kid[o] = '\0';
	return true;
}

/* RS256 signature of the signing input; malloc'd base64url, or NULL. */
static char *
sign_input(EVP_PKEY *key, const char *input)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *signature = NULL;
	size_t		siglen = 0;
	char	   *encoded = NULL;

	if (ctx != NULL &&
		EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
		EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *) input, strlen(input)) == 1 &&
		(signature = malloc(siglen)) != NULL &&
		EVP_DigestSign(ctx, signature, &siglen, (const unsigned char *) input, strlen(input)) == 1)
		encoded = base64url_encode(signature, siglen);
	free(signature);
	EVP_MD_CTX_free(ctx);
	return encoded;
}

char *
jwt_sign_rs256(EVP_PKEY *key, const char *kid, const char *claims_json,
			   char *err, size_t errlen)
{
	char		header[128];
	char	   *header64;
	char	   *claims64;
	char	   *input = NULL;
	char	   *signature = NULL;
	char	   *token = NULL;
	size_t		inputlen;

	snprintf(header, sizeof(header), "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", kid);
	header64 = base64url_encode((const unsigned char *) header, strlen(header));
	claims64 = base64url_encode((const unsigned char *) claims_json, strlen(claims_json));
	if (header64 && claims64)
	{
		inputlen = strlen(header64) + 1 + strlen(claims64);
		input = malloc(inputlen + 1);
	}
	if (input)
	{
		snprintf(input, inputlen + 1, "%s.%s", header64, claims64);
		signature = sign_input(key, input);
	}
	if (signature)
	{
		token = malloc(inputlen + 1 + strlen(signature) + 1);
		if (token)
			sprintf(token, "%s.%s", input, signature);
	}
	if (token == NULL)
		snprintf(err, errlen, "could not sign the registry token");
	free(header64);
	free(claims64);
	free(input);
	free(signature);
	return token;
}
