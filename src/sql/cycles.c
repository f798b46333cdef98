/*
 * cycles.c — SQL entry points that run a cycle (run_guard(),
 * run_enqueuer()) and trim the event log (purge_events()).
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"

#include "control/cycle.h"
#include "control/enqueuer.h"
#include "control/guard.h"
#include "sql/arguments.h"
#include "store/event_log.h"

PG_FUNCTION_INFO_V1(rm_run_guard);
PG_FUNCTION_INFO_V1(rm_run_enqueuer);
PG_FUNCTION_INFO_V1(rm_purge_events);

/* Run one cycle in the caller's transaction and return its summary. */
static Datum
run_cycle_from_sql(CycleKind kind, void (*body) (CycleSummary *))
{
	CycleSummary summary;

	run_cycle(kind, body, &summary);
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
