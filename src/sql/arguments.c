/*
 * arguments.c — argument checks of the SQL entry points; the path check is
 * shared with the trigger on registry_migration.repositories.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "core/path.h"
#include "sql/arguments.h"

/* A path is quoted in messages up to this many bytes. */
#define PATH_SHOWN_BYTES 100

void
path_require_valid(text *path, int sqlerrcode)
{
	const char *bytes = VARDATA_ANY(path);
	int			len = VARSIZE_ANY_EXHDR(path);
	char		why[200];
	char	   *shown;

	if (path_validate(bytes, (size_t) len, why, sizeof(why)))
		return;
	shown = pnstrdup(bytes, pg_mbcliplen(bytes, len, PATH_SHOWN_BYTES));
	ereport(ERROR,
			(errcode(sqlerrcode),
			 errmsg("invalid repository path \"%s\": %s", shown, why),
			 errdetail("A path is lower-case components of letters and digits joined by "
					   "\".\", \"_\", \"__\" or \"-\", separated by \"/\", at most %d bytes.",
					   PATH_MAX_BYTES)));
}

char *
path_argument(FunctionCallInfo fcinfo, int argno)
{
	text	   *path = PG_GETARG_TEXT_PP(argno);

	path_require_valid(path, ERRCODE_INVALID_PARAMETER_VALUE);
	return text_to_cstring(path);
}

void
require_argument(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"%s\" must not be NULL", name)));
}
