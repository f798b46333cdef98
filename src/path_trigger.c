/*
 * path_trigger.c — BEFORE INSERT OR UPDATE OF path trigger on
 * registry_migration.repositories: refuses a path outside the repository
 * grammar with SQLSTATE 23514 and a message that says what is wrong.
 *
 * The table also has a CHECK constraint with the same grammar, which holds
 * even when triggers are disabled (for example by a data-only restore).
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include "path.h"

PG_FUNCTION_INFO_V1(rm_repositories_check_path);

Datum
rm_repositories_check_path(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	bool		isnull;
	Datum		value;
	char		why[200];
	text	   *path;
	TupleDesc	desc;
	char	   *shown;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		elog(ERROR, "rm_repositories_check_path must be a BEFORE ROW trigger");

	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple
		: trigdata->tg_trigtuple;
	desc = RelationGetDescr(trigdata->tg_relation);
	value = heap_getattr(tuple, SPI_fnumber(desc, "path"), desc, &isnull);
	if (isnull)
		return PointerGetDatum(tuple);	/* NOT NULL reports it */

	path = DatumGetTextPP(value);
	if (path_validate(VARDATA_ANY(path), VARSIZE_ANY_EXHDR(path), why, sizeof(why)))
		return PointerGetDatum(tuple);

	/* Quote at most the first 100 bytes of a long path. */
	shown = text_to_cstring(path);
	shown[pg_mbcliplen(shown, strlen(shown), 100)] = '\0';
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("invalid repository path \"%s\": %s", shown, why),
			 errdetail("A path is lower-case components of letters and digits joined by "
					   "\".\", \"_\", \"__\" or \"-\", separated by \"/\", at most %d bytes.",
					   PATH_MAX_BYTES)));
	PG_RETURN_NULL();			/* not reached */
}
