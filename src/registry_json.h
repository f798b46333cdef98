/*
 * registry_json.h — the two things the extension reads from registry
 * answers, with PostgreSQL's own JSON parser: the "status" string of an
 * import status, and the number of tags of a tag list page.
 */
#ifndef RM_REGISTRY_JSON_H
#define RM_REGISTRY_JSON_H

#include "postgres.h"

/*
 * The top-level "status" member of a JSON object, when it is a string.
 * NULL when the body is not JSON, not an object, has no such member, or
 * holds something else there (SPEC §8: all of these mean "unknown").
 */
extern char *json_status_member(const char *body, size_t len);

/* Elements of the top-level "tags" array (null counts 0); -1 when unusable. */
extern int64 json_tags_count(const char *body, size_t len);

#endif
