/*
 * test_url_origin.c — which URLs may receive the registry's token: same
 * scheme, host and port as registry_url, judged by parsing, never by prefix.
 */
#include <stdlib.h>

#include "unit.h"
#include "core/url_origin.h"

static void
check_origin(const char *origin, const char *candidate, bool want)
{
	CHECK_INT_EQ(url_same_origin(origin, candidate), want, "\"%s\" on the origin of \"%s\"",
				 candidate ? candidate : "NULL", origin ? origin : "NULL");
}

static void
test_same_origin(void)
{
	const char *registry = "http://127.0.0.1:5000";

	check_origin(registry, "http://127.0.0.1:5000/v2/a/tags/list?n=2&last=b", true);
	check_origin(registry, "http://127.0.0.1:5000", true);
	check_origin(registry, "HTTP://127.0.0.1:5000/x", true);
	check_origin("http://Registry.Example.com", "http://registry.example.COM/v2/x", true);
	/* A missing port is the scheme's default. */
	check_origin("http://r.example.com", "http://r.example.com:80/x", true);
	check_origin("https://r.example.com:443/prefix", "https://r.example.com/x", true);
	check_origin("http://[::1]:5000", "http://[::1]:5000/x", true);

	/* Another host, port or scheme. */
	check_origin(registry, "http://127.0.0.2:5000/x", false);
	check_origin(registry, "http://localhost:5000/x", false);
	check_origin(registry, "http://127.0.0.1:5001/x", false);
	check_origin(registry, "http://127.0.0.1/x", false);
	check_origin(registry, "https://127.0.0.1:5000/x", false);
	check_origin("https://r.example.com", "http://r.example.com:443/x", false);
	check_origin("http://[::1]:5000", "http://[::2]:5000/x", false);
	check_origin(registry, "ftp://127.0.0.1:5000/x", false);

	/* The registry's URL as a prefix of something else. */
	check_origin(registry, "http://127.0.0.1:5000@other:6000/v2/x/tags/list", false);
	check_origin(registry, "http://127.0.0.1:5000@127.0.0.1:6000/v2/x", false);
	check_origin(registry, "http://127.0.0.1:50000/x", false);
	check_origin(registry, "http://127.0.0.1:5000.evil.example/x", false);
	check_origin("http://registry", "http://registry.evil.example/x", false);
	check_origin(registry, "http://127.0.0.1:5000\\@other:6000/x", false);
	/* Credentials in the target: not the registry as configured. */
	check_origin(registry, "http://user:secret@127.0.0.1:5000/x", false);
	check_origin(registry, "http://user@127.0.0.1:5000/x", false);

	/* Not absolute, not parseable, not http. */
	check_origin(registry, "//127.0.0.1:5000/x", false);
	check_origin(registry, "/v2/x", false);
	check_origin(registry, "http://[::1/x", false);
	check_origin(registry, "", false);
	check_origin(registry, NULL, false);
	check_origin(NULL, registry, false);
	check_origin("ftp://127.0.0.1:5000", "ftp://127.0.0.1:5000/x", false);
}

static void
check_resolve(const char *base, const char *reference, const char *want)
{
	char	   *got = url_resolve(base, reference);

	CHECK_STR_EQ(got, want, "\"%s\" resolved against \"%s\"", reference, base);
	free(got);
}

static void
test_resolve(void)
{
	const char *registry = "http://127.0.0.1:5000";

	check_resolve(registry, "/v2/a/tags/list?n=2&last=b", "http://127.0.0.1:5000/v2/a/tags/list?n=2&last=b");
	check_resolve(registry, "v2/a/tags/list?n=2", "http://127.0.0.1:5000/v2/a/tags/list?n=2");
	check_resolve("http://127.0.0.1:5000/prefix", "/v2/a", "http://127.0.0.1:5000/v2/a");
	check_resolve(registry, "http://other:6000/v2/a", "http://other:6000/v2/a");
	/* A scheme-relative reference names another host: resolved, then judged. */
	check_resolve(registry, "//other:6000/v2/a", "http://other:6000/v2/a");
	check_resolve(registry, "/v2/a/../../b", "http://127.0.0.1:5000/b");
	check_resolve(registry, "http://[bad/x", NULL);
	check_resolve(registry, NULL, NULL);
	check_resolve("not a url", "/v2/a", NULL);
}

static void
test_is_http(void)
{
	CHECK(url_is_http("http://h/x"), "http");
	CHECK(url_is_http("HTTPS://h:1/x"), "https");
	CHECK(!url_is_http("ftp://h/x"), "ftp");
	CHECK(!url_is_http("file:///etc/passwd"), "file");
	CHECK(!url_is_http("gopher://h/x"), "gopher");
	CHECK(!url_is_http("/x"), "relative");
	CHECK(!url_is_http(NULL), "NULL");
}

static void
check_proxy(const char *url, const char *why)
{
	const char *problem = url_proxy_problem(url);

	if (why == NULL)
		CHECK_STR_EQ(problem, NULL, "\"%s\" is a proxy", url);
	else
		CHECK_CONTAINS(problem, why, "\"%s\" is refused as a proxy", url);
}

static void
test_proxy(void)
{
	check_proxy("http://proxy.example.com:3128", NULL);
	check_proxy("http://proxy.example.com:3128/", NULL);
	check_proxy("HTTPS://127.0.0.1:8443", NULL);
	check_proxy("socks5://[::1]:1080", NULL);
	check_proxy("socks5h://proxy:1080", NULL);
	check_proxy("ftp://proxy:21", "scheme must be http, https, socks5 or socks5h");
	check_proxy("socks4://proxy:1080", "scheme must be");
	check_proxy("file:///tmp/x", "scheme must be");
	check_proxy("http://user:secret@proxy:3128", "must not contain credentials");
	check_proxy("http://user@proxy:3128", "must not contain credentials");
	check_proxy("http://proxy.example.com", "must name its port");
	check_proxy("http://proxy:3128/path", "must not contain a path");
	check_proxy("http://proxy:3128/?a=b", "must not contain a path, a query");
	check_proxy("http://proxy:3128/#x", "a fragment");
	check_proxy("proxy:3128", "must be a URL");
	check_proxy("not a url", "must be a URL");
	check_proxy("http://", "must be a URL");
}

void
test_url_origin(void)
{
	test_same_origin();
	test_resolve();
	test_is_http();
	test_proxy();
}
