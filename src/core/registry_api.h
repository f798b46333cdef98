/*
 * registry_api.h — the registry HTTP API as pure functions:
 * which request each call sends, and how its answer is classified.
 *
 * No server headers (libcurl only, for its URL escaping and date parsing):
 * unit-tested under sanitizers.
 */
#ifndef RM_REGISTRY_API_H
#define RM_REGISTRY_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef enum RegistryCall
{
	CALL_START_PRE_IMPORT,
	CALL_START_IMPORT,
	CALL_CANCEL,
	CALL_FORCE_CANCEL,
	CALL_STATUS,
	CALL_TAGS
} RegistryCall;

/* What an answer means for the repository. */
typedef enum AnswerClass
{
	ANSWER_OK,					/* 200 to a status or tag request */
	ANSWER_ACCEPTED,			/* 202 to a start or a cancel */
	ANSWER_ALREADY_IMPORTED,	/* 200 to a start */
	ANSWER_NOT_FOUND,			/* 404 */
	ANSWER_ALREADY_RUNNING,		/* 425 (pre-import) or 409 (import) to a start */
	ANSWER_TOO_MANY_IMPORTS,	/* 429 to a start: the registry is full */
	ANSWER_NOT_READY,			/* 429 to a start: this repository is not ready yet */
	ANSWER_UNAVAILABLE,			/* no usable answer: says nothing about the repository */
	ANSWER_REFUSED				/* 400, 424, another 4xx, or an unusable answer */
} AnswerClass;

extern const char *answer_class_name(AnswerClass answer);

extern const char *registry_call_method(RegistryCall call);

/* Only GET follows redirects; PUT and DELETE must not repeat elsewhere. */
extern bool registry_call_follows_redirects(RegistryCall call);

/*
 * The URL of a call: base (without trailing "/") + the call's path, with
 * each segment of the repository path escaped. tags_per_page is the n of a
 * tag list (ignored for other calls). Returns a malloc'd string, or NULL:
 * with the reason in why when path is not a valid repository path (so
 * "..", empty or encoded segments never become a request to another
 * endpoint, whoever the caller is), with why empty when out of memory.
 */
extern char *registry_call_url(const char *base, RegistryCall call, const char *path,
							   long tags_per_page, char *why, size_t whylen);

/*
 * Classify an answer. transport_ok is false when no complete HTTP answer
 * arrived (connection refused, timeout, TLS, not HTTP, truncated, ...).
 */
extern AnswerClass classify_answer(RegistryCall call, bool transport_ok, long http_status);

/*
 * Whether a start answered "registry unavailable" may still have been
 * carried out: the request reached the registry (a connection was made,
 * registry_down is false) and what came back says nothing either way — no
 * HTTP answer at all (a timeout after connecting, a reset, a cut or non-HTTP
 * response, http_status 0) or a 5xx. A 3xx, 401, 403 or 408 is the registry
 * declining the request before acting on it.
 */
extern bool start_answer_lost(bool registry_down, long http_status);

/* The error code of a 429 that concerns one repository, not the registry. */
#define REGISTRY_CODE_NOT_READY "IMPORT_REPOSITORY_NOT_READY"


/*
 * The classes the worker counts the registry's answers in: an AnswerClass,
 * with a 429 to a start told apart by its error code, and "registry
 * unavailable" told apart into down (no connection could be made) and
 * failed (a connection was made, nothing usable came back).
 */
typedef enum AnswerCounter
{
	COUNT_OK,
	COUNT_ACCEPTED,
	COUNT_ALREADY_IMPORTED,
	COUNT_ALREADY_RUNNING,
	COUNT_NOT_FOUND,
	COUNT_429_RATE_LIMIT,		/* code IMPORT_RATE_LIMIT */
	COUNT_429_NOT_READY,		/* code REGISTRY_CODE_NOT_READY */
	COUNT_429_OTHER_CODE,
	COUNT_429_NO_CODE,			/* no code, or a body that cannot be read */
	COUNT_REFUSED,
	COUNT_FAILED,
	COUNT_DOWN
} AnswerCounter;

#define ANSWER_COUNTERS (COUNT_DOWN + 1)

/* The error code of the registry's 429 when too many imports run. */
#define REGISTRY_CODE_RATE_LIMIT "IMPORT_RATE_LIMIT"

/*
 * A 429 to a start, by the error code of its body (the registry's error
 * envelope; len bytes, may be NULL): one of the COUNT_429_* counters. The
 * body is read once, for both the class and the counter.
 */
extern AnswerCounter start_429_counter(const char *body, size_t len);

/*
 * The class of a 429 to a start, from its counter: ANSWER_NOT_READY for
 * REGISTRY_CODE_NOT_READY (the cool-down after a canceled pre-import),
 * ANSWER_TOO_MANY_IMPORTS for any other code, no code, or a body that
 * cannot be read.
 */
extern AnswerClass start_429_class(AnswerCounter counter);

/*
 * Which counter an answer of this class goes to; counter_429 is the
 * start_429_counter() of a 429 to a start, used only for those.
 */
extern AnswerCounter answer_counter(AnswerClass answer, bool registry_down,
									AnswerCounter counter_429);

/* The counter's name in worker_status.answers. */
extern const char *answer_counter_name(AnswerCounter counter);

/*
 * A Retry-After value, as seconds to wait from now: delta-seconds or an
 * HTTP date. False when the value is neither; a date in the past gives 0.
 */
extern bool parse_retry_after(const char *value, time_t now, int64_t *seconds);

/*
 * The target of the rel="next" link in a Link header value, copied to out
 * (NUL-terminated). False when there is no such link or it does not fit.
 */
extern bool link_header_next(const char *value, char *out, size_t outlen);

#endif
