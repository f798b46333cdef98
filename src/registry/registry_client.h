/*
 * registry_client.h — the five calls of the registry API, each
 * returning a typed answer the cycles and the SQL functions act on.
 */
#ifndef RM_REGISTRY_CLIENT_H
#define RM_REGISTRY_CLIENT_H

#include "postgres.h"

#include "core/registry_api.h"

typedef struct RegistryAnswer
{
	AnswerClass answer;
	/*
	 * ANSWER_UNAVAILABLE only: true when the registry is down (no connection
	 * could be made at all), false for a failed answer (a connection was
	 * made, but what came back is not usable).
	 */
	bool		registry_down;
	long		http_status;	/* 0 when no HTTP answer arrived */
	/* status calls: the registry's status string; NULL when unusable */
	char	   *registry_status;
	/* tag calls: tags counted (up to the limit asked for); -1 when unusable */
	int64		tags;
	/* 429 "too many imports": the registry's Retry-After, as seconds from now */
	bool		has_retry_after;
	int64		retry_after_s;
	/* what went wrong, for errors, logs and the event log; NULL when fine */
	char	   *problem;
} RegistryAnswer;

/*
 * Called with the counter of every answer as soon as it is read (a tag
 * list: every page), unless NULL. Only the background worker sets it, so
 * that it counts its own cycles' answers and no SQL call's. It must not
 * raise an error.
 */
typedef void (*registry_answer_hook_type) (AnswerCounter counter);
extern registry_answer_hook_type registry_answer_hook;

/* Raise 22023 when registry_migration.registry_url is empty. */
extern void registry_require_url(void);

/*
 * Start (pre-import or final import), cancel (plain or forced), or status.
 * A path that is not a repository path raises 22023 before any request.
 */
extern RegistryAnswer registry_call(RegistryCall call, const char *path);

/*
 * Status of many repositories at once, at most max_concurrent_requests in
 * flight. answers[i] is the answer for paths[i].
 */
extern void registry_status_many(const char *const *paths, int npaths, RegistryAnswer *answers);

/*
 * Count the tags of a repository, following the registry's pages, and
 * stopping once enough (> 0) are counted; enough = 0 counts them all. A
 * next page (Link header) that is not on the scheme, host and port of
 * registry_url is not followed: the listing is then "registry unavailable".
 */
extern RegistryAnswer registry_count_tags(const char *path, int64 enough);

#endif
