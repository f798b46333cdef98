/*
 * sql_path.c — the path check shared by the SQL functions that take a
 * repository path and by the trigger on registry_migration.repositories.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "core/path.h"
#include "sql/path_args.h"

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
