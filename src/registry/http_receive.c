/*
 * http_receive.c — libcurl's callbacks for one transfer, and what a
 * transfer that failed is called in messages.
 *
 * The callbacks never call into the server (no palloc, no ereport: an error
 * would longjmp through libcurl); they write into malloc'd buffers of the
 * transfer's Running slot, and stop the transfer by returning short when a
 * body outgrows its cap.
 */
#include "postgres.h"

#include "registry/http_receive.h"

/* A longer header value is cut: only Retry-After and Link are read. */
#define MAX_HEADER_VALUE 1024

static size_t
write_body(char *data, size_t size, size_t nmemb, void *arg)
{
	Running    *r = arg;
	size_t		n = size * nmemb;

	if (r->body_len + n > r->max_body)
	{
		r->too_large = true;
		return 0;				/* stops the transfer */
	}
	if (r->body_len + n + 1 > r->body_cap)
	{
		/* Doubling, but never past the cap: a body costs at most max_body + 1. */
		size_t		cap = Min(Max(r->body_cap * 2, r->body_len + n + 1), r->max_body + 1);
		char	   *grown = realloc(r->body, cap);

		if (grown == NULL)
			return 0;
		r->body = grown;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, data, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	return n;
}

/* A copy of the header's value when line is "name: value", else NULL. */
static char *
header_value(const char *line, size_t len, const char *name)
{
	size_t		namelen = strlen(name);
	size_t		start = namelen + 1;
	size_t		end = len;

	if (len <= namelen || pg_strncasecmp(line, name, namelen) != 0 || line[namelen] != ':')
		return NULL;
	while (start < end && (line[start] == ' ' || line[start] == '\t'))
		start++;
	while (end > start && (line[end - 1] == '\r' || line[end - 1] == '\n' || line[end - 1] == ' '))
		end--;
	if (end - start > MAX_HEADER_VALUE)
		end = start + MAX_HEADER_VALUE;
	return strndup(line + start, end - start);
}

/* A repeated header: the last one counts. */
static void
replace_value(char **slot, char *value)
{
	if (value == NULL)
		return;
	free(*slot);
	*slot = value;
}

static size_t
read_header(char *line, size_t size, size_t nmemb, void *arg)
{
	Running    *r = arg;
	size_t		n = size * nmemb;

	/* A new status line starts a new answer (after a redirect or a 1xx). */
	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0)
	{
		free(r->retry_after);
		free(r->link);
		r->retry_after = r->link = NULL;
		return n;
	}
	replace_value(&r->retry_after, header_value(line, n, "Retry-After"));
	replace_value(&r->link, header_value(line, n, "Link"));
	return n;
}

void
http_receive_into(CURL *easy, Running *r)
{
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, read_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->error);
}

void
http_forget_answer(Running *r)
{
	free(r->body);
	free(r->retry_after);
	free(r->link);
	r->body = r->retry_after = r->link = NULL;
	r->body_len = r->body_cap = 0;
	r->too_large = false;
	r->error[0] = '\0';
}

long
http_status_code(CURL *easy)
{
	long		code = 0;

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
	return code;
}

/*
 * Whether the transfer reused a kept connection, which an earlier transfer
 * connected: it opened none of its own (not even one to a proxy), and its
 * request went out. Its connect times stay 0. (When libcurl finds a kept
 * connection dead and tries a new one that cannot connect, this still says
 * kept: a failed answer "while waiting for the answer", where the registry
 * down would be as right.)
 */
static bool
kept_connection_used(CURL *easy)
{
	long		new_connections = 0;
	long		request_bytes = 0;

	curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &new_connections);
	curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_bytes);
	return new_connections == 0 && request_bytes > 0;
}

/*
 * Whether the transfer got a connection: TCP connected, and for https the
 * TLS handshake done too — or a kept connection. (The request size alone
 * proves nothing: a proxy's CONNECT counts in it before any tunnel to the
 * registry exists.)
 */
static bool
connection_made(CURL *easy)
{
	curl_off_t	connected = 0;
	curl_off_t	handshake_done = 0;
	char	   *scheme = NULL;

	if (kept_connection_used(easy))
		return true;
	curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &connected);
	if (connected == 0)
		return false;
	curl_easy_getinfo(easy, CURLINFO_SCHEME, &scheme);
	if (scheme == NULL || pg_strcasecmp(scheme, "https") != 0)
		return true;
	curl_easy_getinfo(easy, CURLINFO_APPCONNECT_TIME_T, &handshake_done);
	return handshake_done != 0;
}

/*
 * Whether the server ended a new TLS session before any answer began. That
 * is how a server refuses a client certificate (or its absence) under TLS
 * 1.3: it checks the certificate after the client considers the handshake
 * done, sends an alert and closes. The client then fails on its first read,
 * where only OpenSSL's reason says it was an alert ("tlsv13 alert
 * certificate required", "tlsv1 alert unknown ca"), or, when the server
 * had closed already, on sending the request. Either way the request was
 * never processed.
 */
static bool
tls_refused_before_answer(CURL *easy, CURLcode rc, const Running *r)
{
	char	   *scheme = NULL;
	long		new_connections = 0;

	if (rc != CURLE_RECV_ERROR && rc != CURLE_SEND_ERROR)
		return false;
	curl_easy_getinfo(easy, CURLINFO_SCHEME, &scheme);
	curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &new_connections);
	if (scheme == NULL || pg_strcasecmp(scheme, "https") != 0 || new_connections == 0 ||
		http_status_code(easy) != 0)
		return false;
	return rc == CURLE_SEND_ERROR || strstr(r->error, " alert ") != NULL;
}

/* Whether a proxy was asked for a tunnel and answered with a refusal. */
static bool
tunnel_refused(CURL *easy)
{
	long		code = 0;

	curl_easy_getinfo(easy, CURLINFO_HTTP_CONNECTCODE, &code);
	return code != 0 && (code < 200 || code > 299);
}

bool
http_never_connected(CURL *easy, CURLcode rc, const Running *r)
{
	if (tunnel_refused(easy))
		return true;
	switch (rc)
	{
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_CONNECT:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_CLIENTCERT:
			return true;
		case CURLE_OPERATION_TIMEDOUT:
			return !connection_made(easy);
		default:
			return tls_refused_before_answer(easy, rc, r);
	}
}

/* Where a timed-out transfer was, from what it had received. */
static const char *
timeout_phase(CURL *easy)
{
	if (!connection_made(easy))
		return "while connecting";
	return http_status_code(easy) == 0 ? "while waiting for the answer" : "while reading the answer";
}

/* libcurl's errors in the words an operator looks for; others keep libcurl's. */
static const struct
{
	CURLcode	code;
	const char *phrase;
}			failure_phrases[] =
{
	{CURLE_COULDNT_RESOLVE_HOST, "DNS failure"},
	{CURLE_COULDNT_RESOLVE_PROXY, "DNS failure"},
	{CURLE_COULDNT_CONNECT, "connection failed"},
	{CURLE_SSL_CONNECT_ERROR, "TLS failure"},
	{CURLE_PEER_FAILED_VERIFICATION, "TLS failure"},
	{CURLE_SSL_CERTPROBLEM, "TLS failure"},
	{CURLE_SSL_CIPHER, "TLS failure"},
	{CURLE_SSL_CACERT_BADFILE, "TLS failure"},
	{CURLE_SSL_CLIENTCERT, "TLS failure"},
	/* An HTTP/0.9 reply: the URLs themselves are always http or https. */
	{CURLE_UNSUPPORTED_PROTOCOL, "not an HTTP answer"},
	{CURLE_WEIRD_SERVER_REPLY, "not an HTTP answer"},
	{CURLE_GOT_NOTHING, "connection closed without an answer"},
	{CURLE_PARTIAL_FILE, "truncated answer"},
	{CURLE_RECV_ERROR, "truncated answer"},
};

char *
http_describe_failure(CURL *easy, CURLcode rc, const Running *r)
{
	const char *detail = r->error[0] ? r->error : curl_easy_strerror(rc);

	if (rc == CURLE_OPERATION_TIMEDOUT)
		return psprintf("timeout %s (%s)", timeout_phase(easy), detail);
	if (tunnel_refused(easy))
		return psprintf("proxy refused the tunnel (%s)", detail);
	if (tls_refused_before_answer(easy, rc, r))
		return psprintf("TLS failure (%s)", detail);
	for (int i = 0; i < lengthof(failure_phrases); i++)
		if (failure_phrases[i].code == rc)
			return psprintf("%s (%s)", failure_phrases[i].phrase, detail);
	return psprintf("%s (%s)", curl_easy_strerror(rc), detail);
}
