/*
 * sql_path.h — repository paths that arrive from SQL: checked against the
 * repository grammar before anything else looks at them, so no caller can
 * name a row or build a registry request with a path the grammar refuses.
 */
#ifndef RM_SQL_PATH_H
#define RM_SQL_PATH_H

#include "postgres.h"

#include "fmgr.h"

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
