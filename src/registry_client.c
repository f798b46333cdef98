/*
 * registry_client.c — requests to the registry and what their answers mean.
 */
#include "postgres.h"

#include <time.h>

#include "mb/pg_wchar.h"

#include "guc.h"
#include "http.h"
#include "path.h"
#include "registry_client.h"
#include "registry_json.h"
#include "token.h"

/* Tags asked for per page when counting them all. */
#define TAGS_PAGE_SIZE 1000
/* A repository with more pages than this is counted as far as here. */
#define MAX_TAG_PAGES 10000

void
registry_require_url(void)
{
	if (rm_registry_url == NULL || rm_registry_url[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("registry_migration.registry_url is not set"),
				 errhint("Set it to the base URL of the registry, for example "
						 "ALTER SYSTEM SET registry_migration.registry_url = 'https://registry.example.com'.")));
}

/*
 * The URL of a call. The SQL functions check paths first; this is the last
 * line of defence, so that no caller can build a request to another
 * endpoint of the registry.
 */
static char *
call_url(RegistryCall call, const char *path, long tags_per_page)
{
	char		why[256];
	char	   *url = registry_call_url(rm_registry_url, call, path, tags_per_page,
										why, sizeof(why));
	char	   *copy;
	char	   *shown;

	if (url == NULL && why[0] != '\0')
	{
		/* Quote at most the first 100 bytes of a long path. */
		shown = pstrdup(path);
		shown[pg_mbcliplen(shown, strlen(shown), 100)] = '\0';
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid repository path \"%s\": %s", shown, why),
				 errdetail("A path is lower-case components of letters and digits joined by "
						   "\".\", \"_\", \"__\" or \"-\", separated by \"/\", at most %d bytes.",
						   PATH_MAX_BYTES)));
	}
	if (url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	copy = pstrdup(url);
	free(url);
	return copy;
}

static void
prepare(HttpTransfer *t, RegistryCall call, const char *path, const char *url)
{
	memset(t, 0, sizeof(*t));
	t->method = registry_call_method(call);
	t->url = url;
	t->follow_redirects = registry_call_follows_redirects(call);
	t->bearer_token = registry_token(call, path);
}

/* The start of an answer's body, when it is printable text, for messages. */
static char *
body_excerpt(const HttpTransfer *t)
{
	int			len = (int) Min(t->body_len, 200);

	if (len == 0 || t->body_too_large || !pg_verifymbstr(t->body, len, true))
		return NULL;
	for (int i = 0; i < len; i++)
		if ((unsigned char) t->body[i] < ' ')
			return NULL;
	return pnstrdup(t->body, pg_mbcliplen(t->body, len, len));
}

/* What went wrong with an answer, as one phrase for messages and the event log. */
static char *
describe(const HttpTransfer *t, AnswerClass answer)
{
	char	   *excerpt;

	if (!t->answered)
		return pstrdup(t->failure);
	if (answer != ANSWER_UNAVAILABLE && answer != ANSWER_REFUSED)
		return NULL;
	if (t->http_status == 401 || t->http_status == 403)
		return psprintf("HTTP %ld: the registry refused the request's credentials "
						"(check registry_migration.jwt_private_key_file, jwt_issuer and jwt_audience)",
						t->http_status);
	excerpt = body_excerpt(t);
	return excerpt ? psprintf("HTTP %ld: %s", t->http_status, excerpt)
		: psprintf("HTTP %ld", t->http_status);
}

static void
read_retry_after(const HttpTransfer *t, RegistryAnswer *a)
{
	int64_t		seconds;

	if (t->retry_after && parse_retry_after(t->retry_after, time(NULL), &seconds))
	{
		a->has_retry_after = true;
		a->retry_after_s = seconds;
	}
}

static RegistryAnswer
interpret(RegistryCall call, const HttpTransfer *t)
{
	RegistryAnswer a = {0};

	a.answer = classify_answer(call, t->answered, t->http_status);
	a.http_status = t->answered ? t->http_status : 0;
	a.tags = -1;
	a.problem = describe(t, a.answer);
	if (a.answer == ANSWER_TOO_MANY_IMPORTS)
		read_retry_after(t, &a);
	if (call == CALL_STATUS && a.answer == ANSWER_OK)
	{
		a.registry_status = t->body_too_large ? NULL : json_status_member(t->body, t->body_len);
		if (a.registry_status == NULL)
			a.problem = t->body_too_large
				? psprintf("status answer larger than %d bytes", HTTP_MAX_BODY)
				: pstrdup("status answer without a status string");
	}
	return a;
}

RegistryAnswer
registry_call(RegistryCall call, const char *path)
{
	HttpTransfer t;

	Assert(call != CALL_TAGS);
	registry_require_url();
	prepare(&t, call, path, call_url(call, path, 0));
	http_run(&t, 1, 1);
	return interpret(call, &t);
}

void
registry_status_many(const char *const *paths, int npaths, RegistryAnswer *answers)
{
	HttpTransfer *transfers = palloc(sizeof(HttpTransfer) * Max(npaths, 1));

	registry_require_url();
	for (int i = 0; i < npaths; i++)
		prepare(&transfers[i], CALL_STATUS, paths[i], call_url(CALL_STATUS, paths[i], 0));
	http_run(transfers, npaths, rm_max_concurrent_requests);
	for (int i = 0; i < npaths; i++)
		answers[i] = interpret(CALL_STATUS, &transfers[i]);
	pfree(transfers);
}

/*
 * The next page of a tag list: the Link target, resolved against the
 * registry's base URL. Only links into the same registry are followed.
 */
static char *
next_page_url(const HttpTransfer *t)
{
	char		target[1024];

	if (t->link == NULL || !link_header_next(t->link, target, sizeof(target)))
		return NULL;
	if (target[0] == '/')
	{
		size_t		baselen = strlen(rm_registry_url);

		while (baselen > 0 && rm_registry_url[baselen - 1] == '/')
			baselen--;
		return psprintf("%.*s%s", (int) baselen, rm_registry_url, target);
	}
	if (strncmp(target, rm_registry_url, strlen(rm_registry_url)) == 0)
		return pstrdup(target);
	return NULL;
}

RegistryAnswer
registry_count_tags(const char *path, int64 enough)
{
	long		per_page = enough > 0 && enough < TAGS_PAGE_SIZE ? (long) enough : TAGS_PAGE_SIZE;
	char	   *url;
	int64		counted = 0;
	RegistryAnswer a = {0};

	registry_require_url();
	url = call_url(CALL_TAGS, path, per_page);
	for (int page = 0; url != NULL && page < MAX_TAG_PAGES; page++)
	{
		HttpTransfer t;
		int64		n;

		prepare(&t, CALL_TAGS, path, url);
		http_run(&t, 1, 1);
		a = interpret(CALL_TAGS, &t);
		if (a.answer != ANSWER_OK)
			return a;
		n = t.body_too_large ? -1 : json_tags_count(t.body, t.body_len);
		if (n < 0)
		{
			a.answer = ANSWER_REFUSED;
			a.problem = pstrdup("tag list answer that is not a tag list");
			return a;
		}
		counted += n;
		if (enough > 0 && counted >= enough)
			break;
		url = next_page_url(&t);
	}
	a.tags = counted;
	return a;
}
