/*
 * http.h — HTTP transfers over libcurl's multi interface, run from a
 * backend: bounded concurrency, timeouts, a response-size cap, and prompt
 * reaction to query cancel, statement_timeout and termination.
 */
#ifndef RM_HTTP_H
#define RM_HTTP_H

#include "postgres.h"

/* The largest answer body kept; a larger one is cut here (SPEC §8.2). */
#define HTTP_MAX_BODY (8 * 1024 * 1024)

typedef struct HttpTransfer
{
	/* the request */
	const char *method;
	const char *url;
	bool		follow_redirects;
	const char *bearer_token;	/* NULL: no Authorization header */

	/* the answer */
	bool		answered;		/* a complete HTTP answer arrived */
	long		http_status;
	char	   *body;			/* NUL-terminated, palloc'd; "" when none */
	size_t		body_len;
	bool		body_too_large; /* cut at HTTP_MAX_BODY */
	char	   *retry_after;	/* Retry-After header value, or NULL */
	char	   *link;			/* Link header value, or NULL */
	char	   *failure;		/* why there is no answer, or NULL */
} HttpTransfer;

/*
 * Run the transfers, at most max_in_flight at a time, and fill in their
 * answers. Raises the usual error when the query is canceled or the
 * backend terminated; nothing leaks then.
 */
extern void http_run(HttpTransfer *transfers, int ntransfers, int max_in_flight);

#endif
