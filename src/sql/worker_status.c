/*
 * worker_status.c — the function behind the worker_status view: one row
 * about the background worker, or none when no worker runs.
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "worker/worker_shared.h"

/* The columns of worker_status_internal(), in order. */
enum
{
	COL_PID,
	COL_DATABASE,
	COL_ACTIVITY,
	COL_SINCE,
	COL_LAST_GUARD,				/* _at, _ms, _summary */
	COL_LAST_ENQUEUE = COL_LAST_GUARD + 3,	/* _at, _ms, _summary */
	COL_LAST_ERROR = COL_LAST_ENQUEUE + 3,
	COL_LAST_ERROR_AT,
	COL_COUNT
};

/* A cycle's three columns from col on; all NULL before its first run. */
static void
put_cycle(const WorkerCycleSlot *slot, int col, Datum *values, bool *nulls)
{
	bool		never = slot->at == 0;

	values[col] = TimestampTzGetDatum(slot->at);
	values[col + 1] = Float8GetDatum(slot->ms);
	values[col + 2] = CStringGetTextDatum(slot->summary);
	nulls[col] = nulls[col + 1] = nulls[col + 2] = never;
}

PG_FUNCTION_INFO_V1(rm_worker_status);

Datum
rm_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WorkerShared copy;
	Datum		values[COL_COUNT];
	bool		nulls[COL_COUNT] = {false};

	InitMaterializedSRF(fcinfo, 0);
	if (!worker_shared_copy(&copy))
		return (Datum) 0;

	values[COL_PID] = Int32GetDatum(copy.pid);
	values[COL_DATABASE] = DirectFunctionCall1(namein, CStringGetDatum(copy.database));
	values[COL_ACTIVITY] = CStringGetTextDatum(copy.activity);
	values[COL_SINCE] = TimestampTzGetDatum(copy.since);
	put_cycle(&copy.last_guard, COL_LAST_GUARD, values, nulls);
	put_cycle(&copy.last_enqueue, COL_LAST_ENQUEUE, values, nulls);
	values[COL_LAST_ERROR] = CStringGetTextDatum(copy.last_error);
	values[COL_LAST_ERROR_AT] = TimestampTzGetDatum(copy.last_error_at);
	nulls[COL_LAST_ERROR] = nulls[COL_LAST_ERROR_AT] = copy.last_error[0] == '\0';
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
