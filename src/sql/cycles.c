/*
 * cycles.c — SQL entry points that run a cycle: the functions run_guard()
 * and run_enqueuer(), in the caller's transaction, and the procedures
 * guard() and enqueue(), which commit after each repository; and
 * purge_events(), which trims the event log.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "nodes/parsenodes.h"

#include "control/cycle.h"
#include "control/enqueuer.h"
#include "control/guard.h"
#include "sql/arguments.h"
#include "store/event_log.h"

PG_FUNCTION_INFO_V1(rm_run_guard);
PG_FUNCTION_INFO_V1(rm_run_enqueuer);
PG_FUNCTION_INFO_V1(rm_purge_events);
PG_FUNCTION_INFO_V1(rm_guard_procedure);
PG_FUNCTION_INFO_V1(rm_enqueue_procedure);

/* Run one cycle in the caller's transaction and return its summary. */
static Datum
run_cycle_from_sql(CycleKind kind, void (*body) (CycleSummary *))
{
	CycleSummary summary;

	run_cycle(kind, body, &summary, CYCLE_IN_CALLER_TRANSACTION);
	return summary_to_jsonb(&summary);
}

Datum
rm_run_guard(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(run_cycle_from_sql(CYCLE_GUARD, guard_cycle_body));
}

Datum
rm_run_enqueuer(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(run_cycle_from_sql(CYCLE_ENQUEUER, enqueue_cycle_body));
}

/*
 * Run one cycle that commits after each repository, from CALL; the summary
 * is the procedure's INOUT argument. Only a CALL outside a transaction
 * block (and outside a function) may commit.
 */
static Datum
run_cycle_from_call(FunctionCallInfo fcinfo, CycleKind kind, void (*body) (CycleSummary *))
{
	const char *name = kind == CYCLE_GUARD ? "guard" : "enqueue";
	MemoryContext caller_memory = CurrentMemoryContext;
	CycleSummary summary;
	TupleDesc	desc;
	Datum		values[1];
	bool		nulls[1] = {false};
	HeapTuple	result;

	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
		castNode(CallContext, fcinfo->context)->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("registry_migration.%s() must be run by CALL outside a transaction block",
						name),
				 errdetail("It commits after each repository."),
				 errhint("Inside a transaction, SELECT registry_migration.run_%s() runs one "
						 "cycle in that transaction.", kind == CYCLE_GUARD ? "guard" : "enqueuer")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "registry_migration.%s() must have one INOUT argument", name);
	SPI_connect_ext(SPI_OPT_NONATOMIC);
	run_cycle(kind, body, &summary, CYCLE_COMMITS_PROCEDURE);
	/* The result outlives the connection and the transactions it committed. */
	MemoryContextSwitchTo(caller_memory);
	values[0] = summary_to_jsonb(&summary);
	result = heap_form_tuple(BlessTupleDesc(desc), values, nulls);
	SPI_finish();
	return HeapTupleGetDatum(result);
}

Datum
rm_guard_procedure(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(run_cycle_from_call(fcinfo, CYCLE_GUARD, guard_cycle_body));
}

Datum
rm_enqueue_procedure(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(run_cycle_from_call(fcinfo, CYCLE_ENQUEUER, enqueue_cycle_body));
}

Datum
rm_purge_events(PG_FUNCTION_ARGS)
{
	int32		max_rows;
	int64		removed;

	require_argument(fcinfo, 0, "max_rows");
	max_rows = PG_GETARG_INT32(0);
	if (max_rows < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("argument \"max_rows\" must be at least 1"),
				 errdetail("The value given is %d.", max_rows)));
	SPI_connect();
	removed = event_log_purge(max_rows);
	SPI_finish();
	PG_RETURN_INT64(removed);
}
