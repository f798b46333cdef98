/*
 * registry_client.c — requests to the registry and what their answers mean.
 *
 * Every answer is read as soon as its transfer ends (http_run hands it to
 * a handler) and only what it means is kept, so a cycle's memory is
 * bounded by the requests in flight times the body cap of their call, not
 * by the number of answers or tag pages.
 */
#include "postgres.h"

#include <time.h>

#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "guc.h"
#include "registry/http.h"
#include "core/path.h"
#include "registry/registry_client.h"
#include "core/registry_json.h"
#include "registry/token.h"
#include "core/url_origin.h"

/* Tags asked for per page when counting them all. */
#define TAGS_PAGE_SIZE 1000
/* A repository with more pages than this is counted as far as here. */
#define MAX_TAG_PAGES 10000

/*
 * Body caps. Status, start and cancel answers are a few hundred bytes: a
 * longer one is unusable (a status over the cap is "unknown"). A tag page
 * holds up to TAGS_PAGE_SIZE names, or every name when the registry ignores
 * n, so it may be large.
 */
#define SMALL_ANSWER_CAP (64 * 1024)
#define TAG_PAGE_CAP HTTP_MAX_BODY

registry_answer_hook_type registry_answer_hook = NULL;

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
prepare(HttpTransfer *t, RegistryCall call, const char *url, const char *token)
{
	memset(t, 0, sizeof(*t));
	t->method = registry_call_method(call);
	t->url = url;
	t->follow_redirects = registry_call_follows_redirects(call);
	t->bearer_token = token;
	t->token_origin = rm_registry_url;
	t->max_body = call == CALL_TAGS ? TAG_PAGE_CAP : SMALL_ANSWER_CAP;
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

/*
 * The registry's status string, or NULL with a->problem set. It must also
 * be text in the database's encoding, since it is returned and logged.
 */
static void
read_status(const HttpTransfer *t, RegistryAnswer *a)
{
	char		status[REGISTRY_STATUS_MAX + 1];

	if (t->body_too_large)
		a->problem = psprintf("status answer larger than %d bytes", SMALL_ANSWER_CAP);
	else if (!json_status_member(t->body, t->body_len, status) ||
			 !pg_verifymbstr(status, (int) strlen(status), true))
		a->problem = psprintf("status answer without a status string (a JSON object "
							  "with a \"status\" string of at most %d bytes)",
							  REGISTRY_STATUS_MAX);
	else
		a->registry_status = pstrdup(status);
}

/* What an answer means; runs while its body is still there. */
static RegistryAnswer
interpret(RegistryCall call, const HttpTransfer *t)
{
	RegistryAnswer a = {0};
	AnswerCounter counter_429 = COUNT_429_NO_CODE;

	a.answer = classify_answer(call, t->answered, t->http_status);
	a.registry_down = a.answer == ANSWER_UNAVAILABLE && t->never_connected;
	a.http_status = t->answered ? t->http_status : 0;
	a.tags = -1;
	/* A 429 about this repository alone: its Retry-After is not registry-wide. */
	if (a.answer == ANSWER_TOO_MANY_IMPORTS)
	{
		counter_429 = start_429_counter(t->body, t->body_len);
		a.answer = start_429_class(counter_429);
	}
	a.problem = describe(t, a.answer);
	if (a.answer == ANSWER_TOO_MANY_IMPORTS)
		read_retry_after(t, &a);
	if (call == CALL_STATUS && a.answer == ANSWER_OK)
		read_status(t, &a);
	if (call == CALL_TAGS && a.answer == ANSWER_OK)
	{
		a.tags = t->body_too_large ? -1 : json_tags_count(t->body, t->body_len);
		if (a.tags < 0)
		{
			a.answer = ANSWER_REFUSED;
			a.problem = t->body_too_large
				? psprintf("tag list page larger than %d bytes", TAG_PAGE_CAP)
				: pstrdup("tag list answer that is not a tag list");
		}
	}
	if (registry_answer_hook)
		registry_answer_hook(answer_counter(a.answer, a.registry_down, counter_429));
	return a;
}

/*
 * The handler of http_run: answers[index] is what transfer index meant;
 * links[index], when links is set, its Link header (for the next page).
 */
typedef struct Interpretation
{
	RegistryCall call;
	RegistryAnswer *answers;
	char	  **links;
} Interpretation;

static void
interpret_answer(HttpTransfer *t, int index, void *arg)
{
	Interpretation *how = arg;

	how->answers[index] = interpret(how->call, t);
	if (how->links != NULL)
		how->links[index] = t->link;
}

RegistryAnswer
registry_call(RegistryCall call, const char *path)
{
	HttpTransfer t;
	RegistryAnswer a;
	Interpretation how = {.call = call, .answers = &a};

	Assert(call != CALL_TAGS);
	registry_require_url();
	prepare(&t, call, call_url(call, path, 0), registry_token(call, path));
	http_run(&t, 1, 1, interpret_answer, &how);
	return a;
}

void
registry_status_many(const char *const *paths, int npaths, RegistryAnswer *answers)
{
	HttpTransfer *transfers = palloc(sizeof(HttpTransfer) * Max(npaths, 1));
	Interpretation how = {.call = CALL_STATUS, .answers = answers};
	const char *token;

	registry_require_url();
	/* Every URL first: an invalid path stops the batch before any request. */
	for (int i = 0; i < npaths; i++)
		transfers[i].url = call_url(CALL_STATUS, paths[i], 0);
	/* The import token is the same for every repository: one pointer, valid for the batch. */
	token = registry_token(CALL_STATUS, NULL);
	for (int i = 0; i < npaths; i++)
		prepare(&transfers[i], CALL_STATUS, transfers[i].url, token);
	http_run(transfers, npaths, rm_max_concurrent_requests, interpret_answer, &how);
	pfree(transfers);
}

/*
 * The URL of the next page of a tag list, or NULL after the last one. The
 * Link target is resolved against the registry's URL and followed only
 * when it has the registry's scheme, host and port, since the page request
 * carries the token. Returns false (with a->problem) when the next page is
 * elsewhere: a listing that cannot be finished is a failed answer.
 */
static bool
next_page_url(const char *link, RegistryAnswer *a, char **next)
{
	char		target[1024];
	char	   *resolved;
	bool		ours;

	*next = NULL;
	if (link == NULL || !link_header_next(link, target, sizeof(target)))
		return true;
	resolved = url_resolve(rm_registry_url, target);
	ours = resolved != NULL && url_same_origin(rm_registry_url, resolved);
	if (ours)
		*next = pstrdup(resolved);
	free(resolved);
	if (!ours)
	{
		a->answer = ANSWER_UNAVAILABLE;
		a->tags = -1;
		a->problem = pstrdup("the tag list's next page (Link header) is not on the registry's "
							 "scheme, host and port; it was not followed");
	}
	return ours;
}

/*
 * Count the pages' tags from url on, in page_cxt (reset between pages, so
 * a page's leftovers go when the next one starts); the answer's strings
 * are in page_cxt.
 */
static RegistryAnswer
count_pages(char *url, const char *token, int64 enough, MemoryContext page_cxt)
{
	MemoryContext caller = MemoryContextSwitchTo(page_cxt);
	int64		counted = 0;
	RegistryAnswer page = {0};
	char	   *link = NULL;
	Interpretation how = {.call = CALL_TAGS, .answers = &page, .links = &link};

	for (int n = 0; url != NULL && n < MAX_TAG_PAGES; n++)
	{
		HttpTransfer t;
		char	   *next;

		MemoryContextReset(page_cxt);
		memset(&page, 0, sizeof(page));
		link = NULL;
		prepare(&t, CALL_TAGS, url, token);
		http_run(&t, 1, 1, interpret_answer, &how);
		pfree(url);
		url = NULL;
		if (page.answer != ANSWER_OK)
			break;
		counted += page.tags;
		if ((enough > 0 && counted >= enough) || !next_page_url(link, &page, &next))
			break;
		/* The next URL must outlive the reset of page_cxt. */
		url = next ? MemoryContextStrdup(caller, next) : NULL;
	}
	MemoryContextSwitchTo(caller);
	if (url != NULL)
		pfree(url);
	if (page.answer == ANSWER_OK)
		page.tags = counted;
	return page;
}

RegistryAnswer
registry_count_tags(const char *path, int64 enough)
{
	long		per_page = enough > 0 && enough < TAGS_PAGE_SIZE ? (long) enough : TAGS_PAGE_SIZE;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext page_cxt;
	RegistryAnswer a;
	char	   *url;
	const char *token;

	registry_require_url();
	url = call_url(CALL_TAGS, path, per_page);
	token = registry_token(CALL_TAGS, path);
	page_cxt = AllocSetContextCreate(caller, "registry tag page", ALLOCSET_SMALL_SIZES);
	PG_TRY();
	{
		a = count_pages(url, token, enough, page_cxt);
		if (a.problem)
			a.problem = MemoryContextStrdup(caller, a.problem);
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(caller);
		MemoryContextDelete(page_cxt);
	}
	PG_END_TRY();
	return a;
}
