/*
 * transport.c — TLS and proxy options of every registry transfer.
 *
 * TLS verification is always on: there is no setting that turns it off,
 * for the registry and for an https proxy alike. A private CA is trusted
 * by naming it (registry_migration.ca_file), which then replaces the
 * system's CA store. The proxy comes from registry_migration.proxy only:
 * the proxy variables of the server's environment are ignored, so that
 * where the token travels is decided by the superuser's settings.
 */
#include "postgres.h"

#include "guc.h"
#include "core/pem_files.h"
#include "core/small_file.h"
#include "registry/transport.h"

static bool
is_set(const char *setting)
{
	return setting != NULL && setting[0] != '\0';
}

/* A file the transport needs, and where its contents go. */
typedef struct TransportFile
{
	const char *setting;		/* without the prefix */
	const char *path;
	PemFileKind kind;
	char	  **contents;
	size_t	   *len;
} TransportFile;

static void
fail(HttpTransport *transport, const char *setting, const char *path, const char *why)
{
	transport_release(transport);
	ereport(ERROR,
			(errcode(ERRCODE_CONFIG_FILE_ERROR),
			 errmsg("could not use registry_migration.%s", setting),
			 errdetail("File \"%s\": %s.", path, why)));
}

void
transport_load(HttpTransport *transport)
{
	TransportFile files[] = {
		{"ca_file", rm_ca_file, PEM_CA_BUNDLE, &transport->ca, &transport->ca_len},
		{"client_cert_file", rm_client_cert_file, PEM_CERTIFICATE,
		&transport->cert, &transport->cert_len},
		{"client_key_file", rm_client_key_file, PEM_PRIVATE_KEY,
		&transport->key, &transport->key_len},
	};
	char		err[256];

	memset(transport, 0, sizeof(*transport));
	for (int i = 0; i < lengthof(files); i++)
	{
		if (!is_set(files[i].path))
			continue;
		*files[i].contents = pem_file_read(files[i].kind, files[i].path, files[i].len,
										   err, sizeof(err));
		if (*files[i].contents == NULL)
			fail(transport, files[i].setting, files[i].path, err);
	}
	if (transport->key != NULL && transport->cert == NULL)
		fail(transport, "client_key_file", rm_client_key_file,
			 "registry_migration.client_cert_file is not set");
	if (transport->cert != NULL && transport->key == NULL)
	{
		/* The key must then be in the certificate's file. */
		EVP_PKEY   *key = pem_parse_private_key(transport->cert, transport->cert_len);

		if (key == NULL)
			fail(transport, "client_cert_file", rm_client_cert_file,
				 "it holds no private key and registry_migration.client_key_file is not set");
		EVP_PKEY_free(key);
	}
}

/*
 * A blob libcurl reads in place: the transport outlives the handles, which
 * are cleaned up before it is released.
 */
static void
set_blob(CURL *easy, CURLoption option, char *data, size_t len)
{
	struct curl_blob blob = {data, len, CURL_BLOB_NOCOPY};

	curl_easy_setopt(easy, option, &blob);
}

void
transport_apply(CURL *easy, const HttpTransport *transport)
{
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(easy, CURLOPT_PROXY_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_PROXY_SSL_VERIFYHOST, 2L);
	if (transport->ca != NULL)
	{
		set_blob(easy, CURLOPT_CAINFO_BLOB, transport->ca, transport->ca_len);
		set_blob(easy, CURLOPT_PROXY_CAINFO_BLOB, transport->ca, transport->ca_len);
		/* Only the named CAs: not the system's directory of CAs beside them. */
		curl_easy_setopt(easy, CURLOPT_CAPATH, NULL);
		curl_easy_setopt(easy, CURLOPT_PROXY_CAPATH, NULL);
	}
	if (transport->cert != NULL)
	{
		set_blob(easy, CURLOPT_SSLCERT_BLOB, transport->cert, transport->cert_len);
		curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");
		/* Without a key file the key is in the certificate's file. */
		if (transport->key != NULL)
			set_blob(easy, CURLOPT_SSLKEY_BLOB, transport->key, transport->key_len);
		else
			set_blob(easy, CURLOPT_SSLKEY_BLOB, transport->cert, transport->cert_len);
		curl_easy_setopt(easy, CURLOPT_SSLKEYTYPE, "PEM");
	}
	/* "" means no proxy, whatever http_proxy and the like say. */
	curl_easy_setopt(easy, CURLOPT_PROXY, is_set(rm_proxy) ? rm_proxy : "");
	if (is_set(rm_proxy))
		curl_easy_setopt(easy, CURLOPT_NOPROXY, "");
}

void
transport_release(HttpTransport *transport)
{
	small_file_free(transport->ca, transport->ca_len);
	small_file_free(transport->cert, transport->cert_len);
	small_file_free(transport->key, transport->key_len);
	memset(transport, 0, sizeof(*transport));
}
