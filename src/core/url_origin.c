/*
 * url_origin.c — origins of URLs with libcurl's URL API (CURLU).
 *
 * Comparing strings is not enough: "http://H:P@other/" starts with
 * "http://H:P" but goes to "other". Only the parsed scheme, host and port
 * say where a request goes.
 */
#include "core/url_origin.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

/* The parsed URL, or NULL. */
static CURLU *
parse(const char *url)
{
	CURLU	   *u;

	if (url == NULL || (u = curl_url()) == NULL)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
	{
		curl_url_cleanup(u);
		return NULL;
	}
	return u;
}

/* One part of a parsed URL, or NULL when it has none; curl_free it. */
static char *
part(CURLU *u, CURLUPart which, unsigned int flags)
{
	char	   *value = NULL;

	if (curl_url_get(u, which, &value, flags) != CURLUE_OK)
		return NULL;
	return value;
}

/* Both absent, or both present and equal ignoring case. */
static bool
same_part(CURLU *a, CURLU *b, CURLUPart which, unsigned int flags)
{
	char	   *x = part(a, which, flags);
	char	   *y = part(b, which, flags);
	bool		same = (x == NULL && y == NULL) ||
		(x != NULL && y != NULL && strcasecmp(x, y) == 0);

	curl_free(x);
	curl_free(y);
	return same;
}

static bool
has_part(CURLU *u, CURLUPart which)
{
	char	   *value = part(u, which, 0);

	curl_free(value);
	return value != NULL;
}

static bool
is_http_scheme(CURLU *u)
{
	char	   *scheme = part(u, CURLUPART_SCHEME, 0);
	bool		http = scheme != NULL &&
		(strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0);

	curl_free(scheme);
	return http;
}

bool
url_is_http(const char *url)
{
	CURLU	   *u = parse(url);
	bool		http = u != NULL && is_http_scheme(u);

	curl_url_cleanup(u);
	return http;
}

bool
url_same_origin(const char *origin, const char *candidate)
{
	CURLU	   *a = parse(origin);
	CURLU	   *b = parse(candidate);
	bool		same = a != NULL && b != NULL && is_http_scheme(a) &&
		same_part(a, b, CURLUPART_SCHEME, 0) &&
		same_part(a, b, CURLUPART_HOST, 0) &&
		same_part(a, b, CURLUPART_ZONEID, 0) &&
		same_part(a, b, CURLUPART_PORT, CURLU_DEFAULT_PORT) &&
		!has_part(b, CURLUPART_USER) && !has_part(b, CURLUPART_PASSWORD);

	curl_url_cleanup(a);
	curl_url_cleanup(b);
	return same;
}

char *
url_resolve(const char *base, const char *reference)
{
	CURLU	   *u = parse(base);
	char	   *resolved = NULL;
	char	   *copy = NULL;

	if (u != NULL && reference != NULL &&
		curl_url_set(u, CURLUPART_URL, reference, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_URL, &resolved, 0) == CURLUE_OK)
		copy = strdup(resolved);
	curl_free(resolved);
	curl_url_cleanup(u);
	return copy;
}

/* The proxy kinds libcurl speaks that a registry request may go through. */
static bool
is_proxy_scheme(CURLU *u)
{
	static const char *const schemes[] = {"http", "https", "socks5", "socks5h"};
	char	   *scheme = part(u, CURLUPART_SCHEME, 0);
	bool		known = false;

	for (size_t i = 0; scheme != NULL && i < sizeof(schemes) / sizeof(schemes[0]); i++)
		known = known || strcasecmp(scheme, schemes[i]) == 0;
	curl_free(scheme);
	return known;
}

/* The path is empty or "/". */
static bool
has_no_path(CURLU *u)
{
	char	   *path = part(u, CURLUPART_PATH, 0);
	bool		none = path == NULL || path[0] == '\0' || strcmp(path, "/") == 0;

	curl_free(path);
	return none;
}

const char *
url_proxy_problem(const char *url)
{
	CURLU	   *u = parse(url);
	const char *problem = NULL;

	if (u == NULL)
		return "The proxy must be a URL such as http://proxy.example.com:3128.";
	if (!is_proxy_scheme(u))
		problem = "The proxy's scheme must be http, https, socks5 or socks5h.";
	else if (has_part(u, CURLUPART_USER) || has_part(u, CURLUPART_PASSWORD))
		problem = "The proxy URL must not contain credentials.";
	else if (!has_part(u, CURLUPART_HOST))
		problem = "The proxy URL must name a host.";
	else if (!has_part(u, CURLUPART_PORT))
		problem = "The proxy URL must name its port.";
	else if (!has_no_path(u) || has_part(u, CURLUPART_QUERY) || has_part(u, CURLUPART_FRAGMENT))
		problem = "The proxy URL must not contain a path, a query or a fragment.";
	curl_url_cleanup(u);
	return problem;
}
