/*
 * arguments.h — checks on the arguments of the SQL entry points. A path is
 * checked against the repository grammar before anything else looks at it,
 * so no caller can name a row or build a registry request with a path the
 * grammar refuses.
 */
#ifndef RM_ARGUMENTS_H
#define RM_ARGUMENTS_H

#include "postgres.h"

#include "fmgr.h"

/* Raise 22004 naming the argument when it is NULL. */
extern void require_argument(FunctionCallInfo fcinfo, int argno, const char *name);

/*
 * Raise sqlerrcode, with a message that says what is wrong, unless path is
 * a valid repository path.
 */
extern void path_require_valid(text *path, int sqlerrcode);

/*
 * Argument argno (not NULL: the caller checked) of a SQL function as a
 * valid repository path; raises 22023 otherwise.
 */
extern char *path_argument(FunctionCallInfo fcinfo, int argno);

#endif
