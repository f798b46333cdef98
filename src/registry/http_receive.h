/*
 * http_receive.h — what one transfer receives, kept outside the server's
 * memory while libcurl runs. Internal to the registry layer (http.c).
 */
#ifndef RM_HTTP_RECEIVE_H
#define RM_HTTP_RECEIVE_H

#include "postgres.h"

#include <curl/curl.h>

#include "utils/timestamp.h"

/*
 * A transfer in flight. Everything libcurl's callbacks write is malloc'd,
 * never palloc'd: a callback must not call into the server.
 */
typedef struct Running
{
	CURL	   *easy;
	struct curl_slist *headers;
	size_t		max_body;
	char	   *body;
	size_t		body_len;
	size_t		body_cap;
	bool		too_large;
	char	   *retry_after;
	char	   *link;
	int			redirects;		/* followed so far */
	TimestampTz deadline;		/* request_timeout, over every hop */
	char		error[CURL_ERROR_SIZE];
} Running;

/* Have easy's body, headers and error text land in r. */
extern void http_receive_into(CURL *easy, Running *r);

/* Forget what one hop received, before the next one or the end. */
extern void http_forget_answer(Running *r);

/* The HTTP status of the last answer, 0 when none arrived. */
extern long http_status_code(CURL *easy);

/*
 * Whether a transfer that ended with rc never got a connection to its
 * server: the name did not resolve, the connection (to the server or to
 * the proxy) was refused or timed out, the proxy would not open a tunnel
 * to it, or the TLS handshake failed or the server refused the TLS session
 * before answering (as a server that wants another client certificate does
 * under TLS 1.3). Anything after that (a timeout while waiting, a reset, a
 * truncated or non-HTTP answer) had a connection.
 */
extern bool http_never_connected(CURL *easy, CURLcode rc, const Running *r);

/* Why a transfer has no answer, as one phrase (palloc'd). */
extern char *http_describe_failure(CURL *easy, CURLcode rc, const Running *r);

#endif
