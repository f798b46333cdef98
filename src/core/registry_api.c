/*
 * registry_api.c — URLs and answer classification of the registry API.
 */
#include "core/registry_api.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "core/path.h"
#include "core/registry_json.h"

static const char *const answer_names[] = {
	[ANSWER_OK] = "ok",
	[ANSWER_ACCEPTED] = "accepted",
	[ANSWER_ALREADY_IMPORTED] = "already imported",
	[ANSWER_NOT_FOUND] = "not found",
	[ANSWER_ALREADY_RUNNING] = "already running",
	[ANSWER_TOO_MANY_IMPORTS] = "too many imports",
	[ANSWER_NOT_READY] = "repository not ready",
	[ANSWER_UNAVAILABLE] = "registry unavailable",
	[ANSWER_REFUSED] = "refused",
};

const char *
answer_class_name(AnswerClass answer)
{
	return (unsigned) answer <= ANSWER_REFUSED ? answer_names[answer] : "?";
}

const char *
registry_call_method(RegistryCall call)
{
	switch (call)
	{
		case CALL_START_PRE_IMPORT:
		case CALL_START_IMPORT:
			return "PUT";
		case CALL_CANCEL:
		case CALL_FORCE_CANCEL:
			return "DELETE";
		case CALL_STATUS:
		case CALL_TAGS:
			return "GET";
	}
	return "GET";
}

bool
registry_call_follows_redirects(RegistryCall call)
{
	return call == CALL_STATUS || call == CALL_TAGS;
}

/*
 * Append the repository path with each "/"-separated segment escaped. Only
 * for valid paths: curl_easy_escape reads a length of 0 as "up to the NUL",
 * so an empty segment would repeat the rest of the path.
 */
static bool
append_escaped_path(char *out, size_t outlen, const char *path)
{
	const char *segment = path;

	for (;;)
	{
		const char *slash = strchr(segment, '/');
		size_t		len = slash ? (size_t) (slash - segment) : strlen(segment);
		char	   *escaped = curl_easy_escape(NULL, segment, (int) len);
		size_t		used = strlen(out);

		if (escaped == NULL)
			return false;
		if (snprintf(out + used, outlen - used, "%s%s", escaped, slash ? "/" : "")
			>= (int) (outlen - used))
		{
			curl_free(escaped);
			return false;
		}
		curl_free(escaped);
		if (slash == NULL)
			return true;
		segment = slash + 1;
	}
}

char *
registry_call_url(const char *base, RegistryCall call, const char *path, long tags_per_page,
				  char *why, size_t whylen)
{
	size_t		outlen;
	size_t		baselen = strlen(base);
	char	   *out;
	size_t		used;

	if (!path_validate(path, strlen(path), why, whylen))
		return NULL;
	/* Escaping at most triples the path; the rest is short. */
	outlen = baselen + 3 * strlen(path) + 96;
	out = malloc(outlen);
	if (out == NULL)
	{
		why[0] = '\0';
		return NULL;
	}
	while (baselen > 0 && base[baselen - 1] == '/')
		baselen--;
	snprintf(out, outlen, "%.*s%s", (int) baselen, base,
			 call == CALL_TAGS ? "/v2/" : "/gitlab/v1/import/");
	if (!append_escaped_path(out, outlen, path))
	{
		why[0] = '\0';
		free(out);
		return NULL;
	}
	used = strlen(out);
	switch (call)
	{
		case CALL_START_PRE_IMPORT:
			snprintf(out + used, outlen - used, "/?import_type=pre");
			break;
		case CALL_START_IMPORT:
			snprintf(out + used, outlen - used, "/?import_type=final");
			break;
		case CALL_FORCE_CANCEL:
			snprintf(out + used, outlen - used, "/?force=true");
			break;
		case CALL_CANCEL:
		case CALL_STATUS:
			snprintf(out + used, outlen - used, "/");
			break;
		case CALL_TAGS:
			snprintf(out + used, outlen - used, "/tags/list?n=%ld", tags_per_page);
			break;
	}
	return out;
}

static AnswerClass
classify_start(long code)
{
	switch (code)
	{
		case 202:
			return ANSWER_ACCEPTED;
		case 200:
			return ANSWER_ALREADY_IMPORTED;
		case 404:
			return ANSWER_NOT_FOUND;
		case 409:
		case 425:
			return ANSWER_ALREADY_RUNNING;
		case 429:
			return ANSWER_TOO_MANY_IMPORTS;
	}
	/* 400, 424, any other 4xx, another 2xx or a 1xx: an unusable answer. */
	return ANSWER_REFUSED;
}

static const char *const counter_names[ANSWER_COUNTERS] = {
	[COUNT_OK] = "ok",
	[COUNT_ACCEPTED] = "accepted",
	[COUNT_ALREADY_IMPORTED] = "already_imported",
	[COUNT_ALREADY_RUNNING] = "already_running",
	[COUNT_NOT_FOUND] = "not_found",
	[COUNT_429_RATE_LIMIT] = "429_" REGISTRY_CODE_RATE_LIMIT,
	[COUNT_429_NOT_READY] = "429_" REGISTRY_CODE_NOT_READY,
	[COUNT_429_OTHER_CODE] = "429_other_code",
	[COUNT_429_NO_CODE] = "429_no_code",
	[COUNT_REFUSED] = "refused",
	[COUNT_FAILED] = "failed",
	[COUNT_DOWN] = "down",
};

const char *
answer_counter_name(AnswerCounter counter)
{
	return (unsigned) counter < ANSWER_COUNTERS ? counter_names[counter] : "?";
}

AnswerCounter
start_429_counter(const char *body, size_t len)
{
	char		code[REGISTRY_STATUS_MAX + 1];

	if (body == NULL || !json_first_error_code(body, len, code))
		return COUNT_429_NO_CODE;
	if (strcmp(code, REGISTRY_CODE_NOT_READY) == 0)
		return COUNT_429_NOT_READY;
	if (strcmp(code, REGISTRY_CODE_RATE_LIMIT) == 0)
		return COUNT_429_RATE_LIMIT;
	return COUNT_429_OTHER_CODE;
}

AnswerClass
start_429_class(AnswerCounter counter)
{
	return counter == COUNT_429_NOT_READY ? ANSWER_NOT_READY : ANSWER_TOO_MANY_IMPORTS;
}

AnswerCounter
answer_counter(AnswerClass answer, bool registry_down, AnswerCounter counter_429)
{
	switch (answer)
	{
		case ANSWER_OK:
			return COUNT_OK;
		case ANSWER_ACCEPTED:
			return COUNT_ACCEPTED;
		case ANSWER_ALREADY_IMPORTED:
			return COUNT_ALREADY_IMPORTED;
		case ANSWER_ALREADY_RUNNING:
			return COUNT_ALREADY_RUNNING;
		case ANSWER_NOT_FOUND:
			return COUNT_NOT_FOUND;
		case ANSWER_TOO_MANY_IMPORTS:
		case ANSWER_NOT_READY:
			return counter_429;
		case ANSWER_UNAVAILABLE:
			return registry_down ? COUNT_DOWN : COUNT_FAILED;
		case ANSWER_REFUSED:
			break;
	}
	return COUNT_REFUSED;
}

AnswerClass
classify_answer(RegistryCall call, bool transport_ok, long code)
{
	bool		is_start = call == CALL_START_PRE_IMPORT || call == CALL_START_IMPORT;

	/* No usable answer about the repository: the registry is unavailable. */
	if (!transport_ok || code >= 500 || code == 401 || code == 403 ||
		(code >= 300 && code < 400) || code < 100 || code > 599)
		return ANSWER_UNAVAILABLE;
	if (is_start)
		return classify_start(code);
	if (code == 408 || code == 429)
		return ANSWER_UNAVAILABLE;
	if (code == 404)
		return ANSWER_NOT_FOUND;
	if (call == CALL_CANCEL || call == CALL_FORCE_CANCEL)
		return code == 202 ? ANSWER_ACCEPTED : ANSWER_REFUSED;
	return code == 200 ? ANSWER_OK : ANSWER_REFUSED;
}

bool
start_answer_lost(bool registry_down, long http_status)
{
	return !registry_down && (http_status == 0 || (http_status >= 500 && http_status <= 599));
}

bool
parse_retry_after(const char *value, time_t now, int64_t *seconds)
{
	const char *p = value;
	time_t		when;

	while (*p == ' ' || *p == '\t')
		p++;
	if (isdigit((unsigned char) *p))
	{
		char	   *end;
		long long	n = strtoll(p, &end, 10);

		while (*end == ' ' || *end == '\t')
			end++;
		if (*end != '\0' || n < 0)
			return false;
		*seconds = n;
		return true;
	}
	when = curl_getdate(p, NULL);
	if (when == -1)
		return false;
	*seconds = when > now ? (int64_t) (when - now) : 0;
	return true;
}

bool
link_header_next(const char *value, char *out, size_t outlen)
{
	const char *p = value;

	/* Link: <url>; rel="next", <url>; rel="prev" */
	while ((p = strchr(p, '<')) != NULL)
	{
		const char *close = strchr(p, '>');
		const char *params_end;
		size_t		len;

		if (close == NULL)
			return false;
		params_end = strchr(close, ',');
		if (params_end == NULL)
			params_end = close + strlen(close);
		len = (size_t) (close - p - 1);
		if (memmem(close, (size_t) (params_end - close), "rel=\"next\"", 10) != NULL ||
			memmem(close, (size_t) (params_end - close), "rel=next", 8) != NULL)
		{
			if (len + 1 > outlen)
				return false;
			memcpy(out, p + 1, len);
			out[len] = '\0';
			return true;
		}
		p = params_end;
	}
	return false;
}
