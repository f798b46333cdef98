/*
 * http.h — HTTP transfers over libcurl's multi interface, run from a
 * backend: bounded concurrency, timeouts, a response-size cap per
 * transfer, redirects followed by hand, and prompt reaction to query
 * cancel, statement_timeout and termination.
 */
#ifndef RM_HTTP_H
#define RM_HTTP_H

#include "postgres.h"

/* The largest body any transfer may keep. */
#define HTTP_MAX_BODY (8 * 1024 * 1024)

/* Redirects a GET follows at most. */
#define HTTP_MAX_REDIRECTS 3

typedef struct HttpTransfer
{
	/* the request */
	const char *method;
	const char *url;
	bool		follow_redirects;	/* GET only */
	const char *bearer_token;	/* NULL: no Authorization header */
	const char *token_origin;	/* the token goes only to this URL's scheme, host and port */
	size_t		max_body;		/* a longer body is not kept (at most HTTP_MAX_BODY) */

	/* the answer */
	bool		answered;		/* a complete HTTP answer arrived */
	long		http_status;
	/* NUL-terminated, "" when none; valid only inside the answer handler */
	const char *body;
	size_t		body_len;
	bool		body_too_large; /* longer than max_body: not kept */
	char	   *retry_after;	/* Retry-After header value, or NULL */
	char	   *link;			/* Link header value, or NULL */
	char	   *failure;		/* why there is no answer, or NULL */
	/* no answer because no connection to the server could be made at all */
	bool		never_connected;
} HttpTransfer;

/*
 * Called once per transfer, as soon as it ends, with its answer; the body
 * is freed when it returns, so memory holds the bodies of the transfers in
 * flight only. It runs in the caller's memory context, outside libcurl.
 */
typedef void (*HttpAnswerHandler) (HttpTransfer *transfer, int index, void *arg);

/*
 * Run the transfers, at most max_in_flight at a time, and hand each answer
 * to handler. Raises the usual error when the query is canceled or the
 * backend terminated; nothing leaks then.
 */
extern void http_run(HttpTransfer *transfers, int ntransfers, int max_in_flight,
					 HttpAnswerHandler handler, void *arg);

#endif
