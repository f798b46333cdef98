/*
 * path.h — validation of repository paths against the Docker distribution
 * repository grammar (at most 255 bytes), with a message that says what is wrong.
 *
 * Pure C (no server headers), unit-tested under sanitizers.
 */
#ifndef RM_PATH_H
#define RM_PATH_H

#include <stdbool.h>
#include <stddef.h>

#define PATH_MAX_BYTES 255

/*
 * True when path[0..len) is a valid repository path. Otherwise false, with
 * a one-line explanation written to why (always NUL-terminated).
 */
extern bool path_validate(const char *path, size_t len, char *why, size_t whylen);

#endif
