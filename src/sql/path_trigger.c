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
#include "fmgr.h"
#include "utils/rel.h"

#include "sql/arguments.h"

PG_FUNCTION_INFO_V1(rm_repositories_check_path);

Datum
rm_repositories_check_path(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	bool		isnull;
	Datum		value;
	TupleDesc	desc;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("repositories_check_path() must be called as a BEFORE ROW trigger")));

	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple
		: trigdata->tg_trigtuple;
	desc = RelationGetDescr(trigdata->tg_relation);
	value = heap_getattr(tuple, SPI_fnumber(desc, "path"), desc, &isnull);
	if (!isnull)				/* NOT NULL reports a NULL */
		path_require_valid(DatumGetTextPP(value), ERRCODE_CHECK_VIOLATION);
	return PointerGetDatum(tuple);
}
