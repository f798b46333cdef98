/*
 * worker_status.c — the function behind the worker_status view: one row
 * about the background worker, or none when no worker runs.
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "worker/worker_counters.h"
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
	COL_CYCLES,
	COL_ANSWERS,
	COL_COUNTERS_SINCE,
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

/* The current error, if any: the latest of those not yet ended by success. */
static void
put_error(const WorkerError *error, Datum *values, bool *nulls)
{
	if (error == NULL)
	{
		nulls[COL_LAST_ERROR] = nulls[COL_LAST_ERROR_AT] = true;
		return;
	}
	values[COL_LAST_ERROR] = CStringGetTextDatum(error->message);
	values[COL_LAST_ERROR_AT] = TimestampTzGetDatum(error->at);
}

/*
 * The counters as JSON text (the view casts it), built from numbers and
 * fixed names only, so that reading them cannot fail.
 */
static void
put_counters(const WorkerCounters *counters, Datum *values)
{
	StringInfoData json;

	initStringInfo(&json);
	worker_counters_cycles_json(counters, &json);
	values[COL_CYCLES] = CStringGetTextDatum(json.data);
	resetStringInfo(&json);
	worker_counters_answers_json(counters, &json);
	values[COL_ANSWERS] = CStringGetTextDatum(json.data);
	values[COL_COUNTERS_SINCE] = TimestampTzGetDatum(counters->since);
	pfree(json.data);
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
	put_error(worker_shared_current_error(&copy), values, nulls);
	put_counters(&copy.counters, values);
	/* A database still at 1.0 declares fewer columns: the others are not read. */
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
