/*
 * http.c — libcurl transfers inside a backend.
 *
 * libcurl callbacks never call into the server (no palloc, no ereport):
 * they write into malloc'd buffers of a Running slot, which http_run copies
 * into palloc'd memory when the transfer ends. PG_FINALLY releases every
 * handle and buffer when an error (a cancel, a timeout) leaves the loop.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "storage/pmsignal.h"

#include "guc.h"
#include "http.h"

#define MAX_REDIRECTS 3
#define MAX_HEADER_VALUE 1024
/* How long one wait may last before interrupts are checked again. */
#define POLL_INTERVAL_MS 100

/* Transfer state owned by libcurl callbacks: malloc only. */
typedef struct Running
{
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *body;
	size_t		body_len;
	size_t		body_cap;
	bool		too_large;
	char	   *retry_after;
	char	   *link;
	char		error[CURL_ERROR_SIZE];
} Running;

static CURLM *multi = NULL;

static size_t
write_body(char *data, size_t size, size_t nmemb, void *arg)
{
	Running    *r = arg;
	size_t		n = size * nmemb;

	if (r->body_len + n > HTTP_MAX_BODY)
	{
		r->too_large = true;
		return 0;				/* stops the transfer */
	}
	if (r->body_len + n + 1 > r->body_cap)
	{
		size_t		cap = Max(r->body_cap * 2, r->body_len + n + 1);
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

static CURL *
new_easy(HttpTransfer *t, Running *r)
{
	CURL	   *easy = curl_easy_init();
	long		connect_ms = Min(rm_connect_timeout_ms, rm_request_timeout_ms);

	if (easy == NULL)
		return NULL;
	r->headers = curl_slist_append(NULL, "Accept: application/json");
	curl_easy_setopt(easy, CURLOPT_URL, t->url);
	curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, t->method);
	if (strcmp(t->method, "PUT") == 0)
	{
		/* An empty body, sent with Content-Length: 0. */
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, 0L);
		r->headers = curl_slist_append(r->headers, "Content-Type:");
	}
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "registry_migration/" EXTVERSION);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) rm_request_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, t->follow_redirects ? 1L : 0L);
	curl_easy_setopt(easy, CURLOPT_MAXREDIRS, (long) MAX_REDIRECTS);
	/* The token goes only to the host of the URL, never to a redirect's. */
	curl_easy_setopt(easy, CURLOPT_UNRESTRICTED_AUTH, 0L);
	if (t->bearer_token)
	{
		curl_easy_setopt(easy, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
		curl_easy_setopt(easy, CURLOPT_XOAUTH2_BEARER, t->bearer_token);
	}
	curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) HTTP_MAX_BODY);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, read_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->error);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, r);
	return easy;
}

static long
status_code(CURL *easy)
{
	long		code = 0;

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
	return code;
}

/* Where a timed-out transfer was, from what it had received. */
static const char *
timeout_phase(CURL *easy)
{
	curl_off_t	connected = 0;

	curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &connected);
	if (connected == 0)
		return "while connecting";
	return status_code(easy) == 0 ? "while waiting for the answer" : "while reading the answer";
}

static char *
describe_failure(CURL *easy, CURLcode rc, const Running *r)
{
	const char *detail = r->error[0] ? r->error : curl_easy_strerror(rc);

	switch (rc)
	{
		case CURLE_OPERATION_TIMEDOUT:
			return psprintf("timeout %s (%s)", timeout_phase(easy), detail);
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
			return psprintf("DNS failure (%s)", detail);
		case CURLE_COULDNT_CONNECT:
			return psprintf("connection failed (%s)", detail);
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_SSL_CACERT_BADFILE:
			return psprintf("TLS failure (%s)", detail);
		case CURLE_TOO_MANY_REDIRECTS:
			return psprintf("more than %d redirects", MAX_REDIRECTS);
		case CURLE_UNSUPPORTED_PROTOCOL:
			/* After a complete 3xx it is the redirect's target; else an HTTP/0.9 reply. */
			if (status_code(easy) >= 300 && status_code(easy) < 400)
				return psprintf("redirect to a URL that is not http or https (%s)", detail);
			return psprintf("not an HTTP answer (%s)", detail);
		case CURLE_GOT_NOTHING:
			return psprintf("connection closed without an answer (%s)", detail);
		case CURLE_WEIRD_SERVER_REPLY:
			return psprintf("not an HTTP answer (%s)", detail);
		case CURLE_PARTIAL_FILE:
		case CURLE_RECV_ERROR:
			return psprintf("truncated answer (%s)", detail);
		default:
			return psprintf("%s (%s)", curl_easy_strerror(rc), detail);
	}
}

/* Copy a finished transfer's answer into palloc'd memory. */
static void
finish(HttpTransfer *t, Running *r, CURLcode rc)
{
	long		code = status_code(r->easy);

	t->http_status = code;
	/* A body over the cap is still an answer, with an unusable body (SPEC §8). */
	t->body_too_large = r->too_large || rc == CURLE_FILESIZE_EXCEEDED;
	t->answered = (rc == CURLE_OK || t->body_too_large) && code != 0;
	t->body = r->body && !t->body_too_large ? pnstrdup(r->body, r->body_len) : pstrdup("");
	t->body_len = strlen(t->body);
	t->retry_after = r->retry_after ? pstrdup(r->retry_after) : NULL;
	t->link = r->link ? pstrdup(r->link) : NULL;
	t->failure = t->answered ? NULL : describe_failure(r->easy, rc, r);
}

static void
release(Running *r)
{
	if (r->easy)
	{
		curl_multi_remove_handle(multi, r->easy);
		curl_easy_cleanup(r->easy);
	}
	curl_slist_free_all(r->headers);
	free(r->body);
	free(r->retry_after);
	free(r->link);
	memset(r, 0, sizeof(*r));
}

static void
start(HttpTransfer *t, Running *r)
{
	r->easy = new_easy(t, r);
	if (r->easy == NULL || curl_multi_add_handle(multi, r->easy) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not start an HTTP request")));
}

/* Collect the transfers that ended; returns how many. */
static int
collect_finished(HttpTransfer *transfers, Running *running)
{
	CURLMsg    *msg;
	int			left;
	int			done = 0;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		Running    *r;
		int			i;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &r);
		i = (int) (r - running);
		finish(&transfers[i], r, msg->data.result);
		release(r);
		done++;
	}
	return done;
}

void
http_run(HttpTransfer *transfers, int ntransfers, int max_in_flight)
{
	Running    *volatile running = palloc0(sizeof(Running) * Max(ntransfers, 1));

	if (multi == NULL && (multi = curl_multi_init()) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not initialise libcurl")));

	PG_TRY();
	{
		int			next = 0;
		int			in_flight = 0;

		while (next < ntransfers || in_flight > 0)
		{
			int			still_running;

			for (; in_flight < max_in_flight && next < ntransfers; next++, in_flight++)
				start(&transfers[next], &running[next]);
			curl_multi_perform(multi, &still_running);
			in_flight -= collect_finished(transfers, running);
			/* Wait only when no further transfer may start now. */
			if (in_flight > 0 && (next >= ntransfers || in_flight >= max_in_flight))
				curl_multi_poll(multi, NULL, 0, POLL_INTERVAL_MS, NULL);
			CHECK_FOR_INTERRUPTS();
			if (!PostmasterIsAlive())
				ereport(FATAL,
						(errcode(ERRCODE_ADMIN_SHUTDOWN),
						 errmsg("terminating a registry request because the postmaster died")));
		}
	}
	PG_FINALLY();
	{
		for (int i = 0; i < ntransfers; i++)
			release(&running[i]);
	}
	PG_END_TRY();
	pfree(running);
}
