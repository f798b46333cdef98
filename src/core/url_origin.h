/*
 * url_origin.h — where a URL points, judged with libcurl's URL parser: the
 * registry's token goes only to the scheme, host and port of
 * registry_migration.registry_url, for redirects and tag-list pages alike.
 *
 * No server headers (libcurl only): unit-tested under sanitizers.
 */
#ifndef RM_URL_ORIGIN_H
#define RM_URL_ORIGIN_H

#include <stdbool.h>

/* Whether url is an absolute http or https URL. */
extern bool url_is_http(const char *url);

/*
 * Whether candidate has the scheme, host and port of origin (a missing port
 * is the scheme's default) and names no user or password. False when
 * either does not parse.
 */
extern bool url_same_origin(const char *origin, const char *candidate);

/*
 * reference (absolute, or relative as in a Link header) resolved against
 * base. malloc'd; NULL when either does not parse or when out of memory.
 */
extern char *url_resolve(const char *base, const char *reference);

/*
 * Why url cannot be the proxy every registry request goes through, or NULL
 * when it can: it must be scheme://host:port with the scheme http, https,
 * socks5 or socks5h, an explicit port (libcurl's default port differs by
 * version and kind), and no user, password, path, query or fragment.
 */
extern const char *url_proxy_problem(const char *url);

#endif
