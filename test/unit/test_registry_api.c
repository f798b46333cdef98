/*
 * test_registry_api.c — URLs, answer classification, Retry-After and Link
 * parsing of the registry API, and URLs refused for paths that are not
 * repository paths.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "core/path.h"
#include "core/registry_api.h"
#include "unit.h"

static void
check_url(const char *base, RegistryCall call, const char *path, long n, const char *want)
{
	char		why[256];
	char	   *got = registry_call_url(base, call, path, n, why, sizeof(why));

	CHECK_STR_EQ(got, want, "URL of call %d for \"%s\" on \"%s\"", (int) call, path, base);
	free(got);
}

/* A path that is not a repository path builds no URL, and says why. */
static void
check_refused(const char *path, const char *reason)
{
	char		why[256] = "";
	RegistryCall calls[] = {CALL_START_PRE_IMPORT, CALL_START_IMPORT, CALL_CANCEL,
	CALL_FORCE_CANCEL, CALL_STATUS, CALL_TAGS};

	for (size_t c = 0; c < sizeof(calls) / sizeof(calls[0]); c++)
	{
		char	   *got = registry_call_url("http://127.0.0.1:5000", calls[c], path, 10,
											why, sizeof(why));

		CHECK_STR_EQ(got, NULL, "call %d for \"%.60s\" is refused", (int) calls[c], path);
		CHECK_CONTAINS(why, reason, "reason for \"%.60s\"", path);
		free(got);
	}
}

static void
test_urls(void)
{
	const char *base = "http://127.0.0.1:5000";

	check_url(base, CALL_START_PRE_IMPORT, "group/app", 0,
			  "http://127.0.0.1:5000/gitlab/v1/import/group/app/?import_type=pre");
	check_url(base, CALL_START_IMPORT, "group/app", 0,
			  "http://127.0.0.1:5000/gitlab/v1/import/group/app/?import_type=final");
	check_url(base, CALL_CANCEL, "group/app", 0,
			  "http://127.0.0.1:5000/gitlab/v1/import/group/app/");
	check_url(base, CALL_FORCE_CANCEL, "group/app", 0,
			  "http://127.0.0.1:5000/gitlab/v1/import/group/app/?force=true");
	check_url(base, CALL_STATUS, "a", 0, "http://127.0.0.1:5000/gitlab/v1/import/a/");
	check_url(base, CALL_TAGS, "group/sub/app", 101,
			  "http://127.0.0.1:5000/v2/group/sub/app/tags/list?n=101");
	/* A trailing slash on the base is not doubled; a prefix path is kept. */
	check_url("https://r.example.com/prefix//", CALL_STATUS, "a/b", 0,
			  "https://r.example.com/prefix/gitlab/v1/import/a/b/");
	check_url(base, CALL_STATUS, "a-b/c__d/e.f", 0,
			  "http://127.0.0.1:5000/gitlab/v1/import/a-b/c__d/e.f/");
}

static void
test_urls_refused(void)
{
	char		slashes[3001];
	char		longest[PATH_MAX_BYTES + 2];
	char		why[256];
	char	   *url;

	/* Nothing that could name another endpoint reaches libcurl. */
	check_refused("..", "separator");
	check_refused("a/../../v2/_catalog", "separator");
	check_refused("a/./b", "separator");
	check_refused("a//b", "empty path component");
	check_refused("/a", "starts with");
	check_refused("a/", "ends with");
	check_refused("", "empty");
	check_refused("a%2e%2e/b", "not allowed");
	check_refused("a%2Fb", "not allowed");
	check_refused("a b/c", "not allowed");
	check_refused("a?x=1", "not allowed");
	check_refused("a#b", "not allowed");
	check_refused("a\\b", "not allowed");
	check_refused("caf\xc3\xa9", "not allowed");
	check_refused("A/b", "upper-case");
	check_refused("a\nb", "not allowed");
	memset(slashes, '/', 3000);
	slashes[3000] = '\0';
	check_refused(slashes, "at most");
	memset(longest, 'a', PATH_MAX_BYTES + 1);
	longest[PATH_MAX_BYTES + 1] = '\0';
	check_refused(longest, "at most 255");
	longest[PATH_MAX_BYTES] = '\0';
	url = registry_call_url("http://h", CALL_STATUS, longest, 0, why, sizeof(why));
	CHECK(url != NULL && strlen(url) == strlen("http://h/gitlab/v1/import//") + PATH_MAX_BYTES,
		  "a path of %d bytes is fine", PATH_MAX_BYTES);
	free(url);
}

/* Expected class of code for a start, written independently of the code. */
static AnswerClass
expected_start(long code)
{
	if (code == 202)
		return ANSWER_ACCEPTED;
	if (code == 200)
		return ANSWER_ALREADY_IMPORTED;
	if (code == 404)
		return ANSWER_NOT_FOUND;
	if (code == 409 || code == 425)
		return ANSWER_ALREADY_RUNNING;
	if (code == 429)
		return ANSWER_TOO_MANY_IMPORTS;
	if (code >= 500 || code == 401 || code == 403 || (code >= 300 && code < 400))
		return ANSWER_UNAVAILABLE;
	return ANSWER_REFUSED;		/* 400, 424, other 4xx (408 too), other 2xx, 1xx */
}

/* Expected class of code for a status, tag list or cancel. */
static AnswerClass
expected_other(RegistryCall call, long code)
{
	bool		cancel = call == CALL_CANCEL || call == CALL_FORCE_CANCEL;

	if (code >= 500 || code == 401 || code == 403 || code == 408 || code == 429 ||
		(code >= 300 && code < 400))
		return ANSWER_UNAVAILABLE;
	if (code == 404)
		return ANSWER_NOT_FOUND;
	if (cancel)
		return code == 202 ? ANSWER_ACCEPTED : ANSWER_REFUSED;
	return code == 200 ? ANSWER_OK : ANSWER_REFUSED;
}

static void
test_classification(void)
{
	static const long codes[] = {100, 101, 200, 201, 202, 204, 301, 302, 307, 400, 401,
	403, 404, 405, 408, 409, 418, 424, 425, 429, 500, 502, 503, 504};
	RegistryCall calls[] = {CALL_START_PRE_IMPORT, CALL_START_IMPORT, CALL_CANCEL,
	CALL_FORCE_CANCEL, CALL_STATUS, CALL_TAGS};

	for (size_t c = 0; c < sizeof(calls) / sizeof(calls[0]); c++)
	{
		bool		start = calls[c] == CALL_START_PRE_IMPORT || calls[c] == CALL_START_IMPORT;

		for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		{
			AnswerClass want = start ? expected_start(codes[i]) : expected_other(calls[c], codes[i]);

			CHECK_STR_EQ(answer_class_name(classify_answer(calls[c], true, codes[i])),
						 answer_class_name(want), "call %d answered %ld", (int) calls[c], codes[i]);
		}
		/* No complete HTTP answer, whatever code was seen before it broke. */
		CHECK_INT_EQ(classify_answer(calls[c], false, 200), ANSWER_UNAVAILABLE, "call %d", (int) calls[c]);
		CHECK_INT_EQ(classify_answer(calls[c], false, 0), ANSWER_UNAVAILABLE, "call %d", (int) calls[c]);
	}
	CHECK_STR_EQ(registry_call_method(CALL_START_IMPORT), "PUT", "start method");
	CHECK_STR_EQ(registry_call_method(CALL_FORCE_CANCEL), "DELETE", "cancel method");
	CHECK_STR_EQ(registry_call_method(CALL_TAGS), "GET", "tags method");
	CHECK(!registry_call_follows_redirects(CALL_START_PRE_IMPORT), "PUT does not follow");
	CHECK(!registry_call_follows_redirects(CALL_CANCEL), "DELETE does not follow");
	CHECK(registry_call_follows_redirects(CALL_STATUS), "GET follows");
	CHECK(registry_call_follows_redirects(CALL_TAGS), "GET follows");
}

static void
check_429(const char *body, AnswerClass want)
{
	CHECK_STR_EQ(answer_class_name(start_429_class(start_429_counter(body, body ? strlen(body) : 0))),
				 answer_class_name(want), "429 with %s", body ? body : "no body");
}

/* Only the repository's cool-down is not registry-wide back-pressure. */
static void
test_start_429(void)
{
	check_429("{\"errors\":[{\"code\":\"IMPORT_REPOSITORY_NOT_READY\",\"message\":\"m\"}]}",
			  ANSWER_NOT_READY);
	check_429("{\"errors\":[{\"code\":\"IMPORT_RATE_LIMIT\",\"message\":\"m\"}]}",
			  ANSWER_TOO_MANY_IMPORTS);
	check_429("{\"errors\":[{\"code\":\"IMPORT_RATE_LIMIT\"},{\"code\":\"IMPORT_REPOSITORY_NOT_READY\"}]}",
			  ANSWER_TOO_MANY_IMPORTS);
	check_429("{\"errors\":[{\"code\":\"import_repository_not_ready\"}]}", ANSWER_TOO_MANY_IMPORTS);
	check_429("{\"errors\":[{\"message\":\"IMPORT_REPOSITORY_NOT_READY\"}]}", ANSWER_TOO_MANY_IMPORTS);
	check_429("{\"errors\":[{\"code\":\"IMPORT_REPOSITORY_NOT_READY\"}]", ANSWER_TOO_MANY_IMPORTS);
	check_429("IMPORT_REPOSITORY_NOT_READY", ANSWER_TOO_MANY_IMPORTS);
	check_429("", ANSWER_TOO_MANY_IMPORTS);
	check_429(NULL, ANSWER_TOO_MANY_IMPORTS);
}

static void
check_counter(AnswerClass answer, bool down, const char *body, const char *want)
{
	CHECK_STR_EQ(answer_counter_name(answer_counter(answer, down,
												   start_429_counter(body, body ? strlen(body) : 0))),
				 want, "counter of %s%s with %s", answer_class_name(answer),
				 down ? " (down)" : "", body ? body : "no body");
}

/*
 * The worker's answer counters: a 429 by its error code, "unavailable" by
 * whether a connection was made, every other class by itself.
 */
static void
test_answer_counters(void)
{
	check_counter(ANSWER_OK, false, NULL, "ok");
	check_counter(ANSWER_ACCEPTED, false, NULL, "accepted");
	check_counter(ANSWER_ALREADY_IMPORTED, false, NULL, "already_imported");
	check_counter(ANSWER_ALREADY_RUNNING, false, NULL, "already_running");
	check_counter(ANSWER_NOT_FOUND, false, NULL, "not_found");
	check_counter(ANSWER_REFUSED, false, "{\"errors\":[{\"code\":\"IMPORT_RATE_LIMIT\"}]}", "refused");
	check_counter(ANSWER_UNAVAILABLE, false, NULL, "failed");
	check_counter(ANSWER_UNAVAILABLE, true, NULL, "down");
	check_counter(ANSWER_TOO_MANY_IMPORTS, false, "{\"errors\":[{\"code\":\"IMPORT_RATE_LIMIT\"}]}",
				  "429_IMPORT_RATE_LIMIT");
	check_counter(ANSWER_NOT_READY, false, "{\"errors\":[{\"code\":\"IMPORT_REPOSITORY_NOT_READY\"}]}",
				  "429_IMPORT_REPOSITORY_NOT_READY");
	check_counter(ANSWER_TOO_MANY_IMPORTS, false, "{\"errors\":[{\"code\":\"BUSY\",\"message\":\"m\"}]}",
				  "429_other_code");
	check_counter(ANSWER_TOO_MANY_IMPORTS, false, "{\"errors\":[{\"message\":\"busy\"}]}", "429_no_code");
	check_counter(ANSWER_TOO_MANY_IMPORTS, false, "busy", "429_no_code");
	check_counter(ANSWER_TOO_MANY_IMPORTS, false, NULL, "429_no_code");
	/* Every counter has a name of its own. */
	for (int i = 0; i < ANSWER_COUNTERS; i++)
		for (int j = 0; j < i; j++)
			CHECK(strcmp(answer_counter_name((AnswerCounter) i), answer_counter_name((AnswerCounter) j)) != 0,
				  "counters %d and %d share a name", i, j);
}

/* A start may have been carried out only when the request got through and nothing usable came back. */
static void
test_start_answer_lost(void)
{
	long		lost[] = {0, 500, 502, 503, 504, 599};
	long		declined[] = {301, 302, 307, 401, 403, 408};

	for (int i = 0; i < (int) (sizeof(lost) / sizeof(lost[0])); i++)
	{
		CHECK(start_answer_lost(false, lost[i]), "a failed answer %ld may hide an accepted start", lost[i]);
		CHECK(!start_answer_lost(true, lost[i]), "registry down (%ld): the start never got there", lost[i]);
	}
	for (int i = 0; i < (int) (sizeof(declined) / sizeof(declined[0])); i++)
		CHECK(!start_answer_lost(false, declined[i]), "%ld: the registry declined the start", declined[i]);
}

static void
check_retry_after(const char *value, time_t now, bool ok, long long want)
{
	int64_t		seconds = -12345;
	bool		got = parse_retry_after(value, now, &seconds);

	CHECK_INT_EQ(got, ok, "Retry-After \"%s\" parsed", value);
	if (ok && got)
		CHECK_INT_EQ(seconds, want, "Retry-After \"%s\"", value);
}

static void
test_retry_after(void)
{
	time_t		date = curl_getdate("Wed, 21 Oct 2015 07:28:00 GMT", NULL);

	CHECK(date != -1, "curl parses the reference date");
	check_retry_after("120", 0, true, 120);
	check_retry_after(" 5 ", 0, true, 5);
	check_retry_after("0", 0, true, 0);
	check_retry_after("-1", 0, false, 0);
	check_retry_after("12abc", 0, false, 0);
	check_retry_after("", 0, false, 0);
	check_retry_after("soon", 0, false, 0);
	check_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", date - 90, true, 90);
	check_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", date + 90, true, 0);
}

static void
check_link(const char *value, bool ok, const char *want)
{
	char		out[64] = "unchanged";
	bool		got = link_header_next(value, out, sizeof(out));

	CHECK_INT_EQ(got, ok, "Link \"%s\" has a next page", value);
	if (ok && got)
		CHECK_STR_EQ(out, want, "next page of Link \"%s\"", value);
}

static void
test_link(void)
{
	check_link("</v2/a/tags/list?n=2&last=b>; rel=\"next\"", true, "/v2/a/tags/list?n=2&last=b");
	check_link("</v2/a?p=1>; rel=\"prev\", </v2/a?p=3>; rel=\"next\"", true, "/v2/a?p=3");
	check_link("</v2/a?p=1>; rel=\"prev\"", false, NULL);
	check_link("</v2/a?p=3>; rel=next", true, "/v2/a?p=3");
	check_link("", false, NULL);
	check_link("<unterminated; rel=\"next\"", false, NULL);
	/* A target longer than the buffer is refused, not cut. */
	check_link("</v2/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa>; rel=\"next\"",
			   false, NULL);
}

void
test_registry_api(void)
{
	test_urls();
	test_urls_refused();
	test_classification();
	test_start_429();
	test_answer_counters();
	test_start_answer_lost();
	test_retry_after();
	test_link();
}
