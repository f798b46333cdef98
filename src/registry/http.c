/*
 * http.c — libcurl transfers inside a backend.
 *
 * libcurl's callbacks (http_receive.c) write into malloc'd buffers of a
 * Running slot, never into the server's memory. When a transfer ends
 * its answer goes to the caller's handler straight from that buffer, which
 * is freed right after, so memory holds the bodies in flight, not every
 * answer. PG_FINALLY releases every handle and buffer when an error (a
 * cancel, a timeout) leaves the loop.
 *
 * Redirects are followed here, not by libcurl, so that where each hop goes
 * is judged with the URL parser: the token goes only to the scheme, host
 * and port of the registry's URL, and request_timeout covers all hops.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "storage/pmsignal.h"
#include "utils/timestamp.h"

#include "core/url_origin.h"
#include "guc.h"
#include "registry/http.h"
#include "registry/http_receive.h"
#include "registry/transport.h"

/* How long one wait may last before interrupts are checked again. */
#define POLL_INTERVAL_MS 100

static CURLM *multi = NULL;

/* Milliseconds left of the request's timeout; at least 1, which ends it at once. */
static long
remaining_ms(const Running *r)
{
	long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), r->deadline);

	return Max(left, 1);
}

/*
 * Point the handle at url (the first hop or a redirect's target), with the
 * token only when url has the scheme, host and port of the registry, and
 * with what is left of the timeout.
 */
static void
set_target(HttpTransfer *t, Running *r, const char *url)
{
	CURL	   *easy = r->easy;
	long		left = remaining_ms(r);
	bool		with_token = t->bearer_token != NULL && url_same_origin(t->token_origin, url);

	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, left);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, Min((long) rm_connect_timeout_ms, left));
	curl_easy_setopt(easy, CURLOPT_HTTPAUTH, with_token ? CURLAUTH_BEARER : CURLAUTH_NONE);
	curl_easy_setopt(easy, CURLOPT_XOAUTH2_BEARER, with_token ? t->bearer_token : NULL);
}

static CURL *
new_easy(HttpTransfer *t, Running *r, const HttpTransport *transport)
{
	CURL	   *easy = curl_easy_init();

	if (easy == NULL)
		return NULL;
	r->easy = easy;
	r->max_body = Min(Max(t->max_body, 1), HTTP_MAX_BODY);
	r->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), rm_request_timeout_ms);
	r->headers = curl_slist_append(NULL, "Accept: application/json");
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
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	/* Redirects are followed by hand (collect_finished), never by libcurl. */
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_UNRESTRICTED_AUTH, 0L);
	curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) r->max_body);
	transport_apply(easy, transport);
	http_receive_into(easy, r);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, r);
	set_target(t, r, t->url);
	return easy;
}

/*
 * Fill in a finished transfer's answer; its body stays in r's buffer.
 * failure, when set, is why a redirect was not followed: no answer then.
 */
static void
finish(HttpTransfer *t, Running *r, CURLcode rc, const char *failure)
{
	long		code = http_status_code(r->easy);

	t->http_status = code;
	/* A body over the cap is still an answer, with an unusable body. */
	t->body_too_large = r->too_large || rc == CURLE_FILESIZE_EXCEEDED;
	t->answered = failure == NULL && (rc == CURLE_OK || t->body_too_large) && code != 0;
	t->body = r->body && !t->body_too_large ? r->body : "";
	t->body_len = r->body && !t->body_too_large ? r->body_len : 0;
	t->retry_after = r->retry_after ? pstrdup(r->retry_after) : NULL;
	t->link = r->link ? pstrdup(r->link) : NULL;
	/*
	 * Only the first hop goes to the registry's own server: a redirect
	 * target that cannot be reached says nothing about the registry.
	 */
	t->never_connected = !t->answered && failure == NULL && r->redirects == 0 &&
		http_never_connected(r->easy, rc, r);
	if (t->answered)
		t->failure = NULL;
	else
		t->failure = failure ? pstrdup(failure) : http_describe_failure(r->easy, rc, r);
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
	http_forget_answer(r);
	memset(r, 0, sizeof(*r));
}

/*
 * Where a transfer that ended on a redirect goes next (malloc'd), when it
 * follows it; NULL otherwise, with *failure set when the redirect is
 * refused. A 3xx without a usable Location is an answer like any other.
 */
static char *
redirect_target(const HttpTransfer *t, Running *r, CURLcode rc, const char **failure)
{
	long		code = http_status_code(r->easy);
	char	   *location = NULL;

	*failure = NULL;
	if (!t->follow_redirects || rc != CURLE_OK || code < 300 || code > 399)
		return NULL;
	if (curl_easy_getinfo(r->easy, CURLINFO_REDIRECT_URL, &location) != CURLE_OK ||
		location == NULL)
		return NULL;
	if (r->redirects >= HTTP_MAX_REDIRECTS)
		*failure = "more than " CppAsString2(HTTP_MAX_REDIRECTS) " redirects";
	else if (!url_is_http(location))
		*failure = "redirect to a URL that is not http or https";
	if (*failure)
		return NULL;
	return strdup(location);
}

/* Send the request again to target, after a redirect. */
static void
follow(HttpTransfer *t, Running *r, const char *target)
{
	curl_multi_remove_handle(multi, r->easy);
	http_forget_answer(r);
	r->redirects++;
	set_target(t, r, target);
	if (curl_multi_add_handle(multi, r->easy) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not follow a redirect of an HTTP request")));
}

static void
start(HttpTransfer *t, Running *r, const HttpTransport *transport)
{
	if (new_easy(t, r, transport) == NULL || curl_multi_add_handle(multi, r->easy) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not start an HTTP request")));
}

/* Hand over the transfers that ended, follow their redirects; returns how many ended. */
static int
collect_finished(HttpTransfer *transfers, Running *running,
				 HttpAnswerHandler handler, void *arg)
{
	CURLMsg    *msg;
	int			left;
	int			done = 0;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		Running    *r;
		HttpTransfer *t;
		CURLcode	rc = msg->data.result;
		const char *failure;
		char	   *target;

		if (msg->msg != CURLMSG_DONE)
			continue;
		/* msg is not valid after curl_multi_remove_handle: copied above. */
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &r);
		t = &transfers[r - running];
		target = redirect_target(t, r, rc, &failure);
		if (target != NULL)
		{
			follow(t, r, target);
			free(target);
			continue;
		}
		finish(t, r, rc, failure);
		handler(t, (int) (r - running), arg);
		t->body = NULL;
		t->body_len = 0;
		release(r);
		done++;
	}
	return done;
}

void
http_run(HttpTransfer *transfers, int ntransfers, int max_in_flight,
		 HttpAnswerHandler handler, void *arg)
{
	Running    *volatile running = palloc0(sizeof(Running) * Max(ntransfers, 1));
	HttpTransport transport;

	if (multi == NULL && (multi = curl_multi_init()) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not initialise libcurl")));
	transport_load(&transport);

	PG_TRY();
	{
		int			next = 0;
		int			in_flight = 0;

		while (next < ntransfers || in_flight > 0)
		{
			int			still_running;

			for (; in_flight < max_in_flight && next < ntransfers; next++, in_flight++)
				start(&transfers[next], &running[next], &transport);
			curl_multi_perform(multi, &still_running);
			in_flight -= collect_finished(transfers, running, handler, arg);
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
		/* Only now: the handles read the transport's files in place. */
		transport_release(&transport);
	}
	PG_END_TRY();
	pfree(running);
}
