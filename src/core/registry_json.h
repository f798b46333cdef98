/*
 * registry_json.h — the three things the extension reads from registry
 * answers: the "status" string of an import status, the number of tags of a
 * tag list page, and the code of the first error of an error answer.
 *
 * Pure C (no server headers), unit-tested under sanitizers. The registry is
 * not trusted, so the reader is iterative with a fixed depth limit, checks
 * the whole body strictly (RFC 8259, valid UTF-8, no NUL byte, no \u0000)
 * before anything in it is used, and keeps only short strings.
 */
#ifndef RM_REGISTRY_JSON_H
#define RM_REGISTRY_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Arrays and objects nested deeper than this make a body unusable. */
#define JSON_MAX_DEPTH 64

/*
 * The longest status string kept. Every status the registry defines is far
 * shorter, so a longer one can only be unknown; keeping it short also keeps
 * a hostile status out of the event log.
 */
#define REGISTRY_STATUS_MAX 64

/*
 * The top-level "status" member of a JSON object, copied to out
 * (NUL-terminated) when it is a string of at most REGISTRY_STATUS_MAX bytes.
 * False when the body is not one valid JSON object, has no such member, or
 * holds anything else there: all of these mean "unknown". When a member
 * name repeats, the last one counts, as in jsonb.
 */
extern bool json_status_member(const char *body, size_t len,
							   char out[REGISTRY_STATUS_MAX + 1]);

/*
 * Elements of the top-level "tags" array of a JSON object (null counts 0);
 * -1 when the body is not one valid JSON object or "tags" is missing or of
 * another type. The last "tags" member counts.
 */
extern int64_t json_tags_count(const char *body, size_t len);

/*
 * The "code" string of the first element of the top-level "errors" array
 * (the registry's error envelope {"errors":[{"code": ...}]}), copied to out
 * when it is at most REGISTRY_STATUS_MAX bytes. False when the body is not
 * one valid JSON object, "errors" is missing, not an array or empty, or its
 * first element is not an object with such a string: all mean "no code".
 * Later elements are never read. Repeated names: the last one counts.
 */
extern bool json_first_error_code(const char *body, size_t len,
								  char out[REGISTRY_STATUS_MAX + 1]);

#endif
