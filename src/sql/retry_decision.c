/*
 * retry_decision.c — SQL entry point of retry_decision(), which shows the
 * decision table of core/decision.c to operators and tests.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "core/decision.h"
#include "sql/arguments.h"
#include "sql/enum_datums.h"

PG_FUNCTION_INFO_V1(rm_retry_decision);

static void
require_not_negative(int32 value, const char *name)
{
	if (value < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("argument \"%s\" must not be negative", name),
				 errdetail("The value given is %d.", value)));
}

Datum
rm_retry_decision(PG_FUNCTION_ARGS)
{
	MigrationState state;
	RegistryStatus status = RS_UNKNOWN;
	int32		retries_count;
	int32		max_retries;

	require_argument(fcinfo, 0, "state");
	require_argument(fcinfo, 2, "retries_count");
	require_argument(fcinfo, 3, "max_retries");
	retries_count = PG_GETARG_INT32(2);
	max_retries = PG_GETARG_INT32(3);
	require_not_negative(retries_count, "retries_count");
	require_not_negative(max_retries, "max_retries");

	state = migration_state_from_datum_cached(fcinfo->flinfo, PG_GETARG_DATUM(0));
	if (!PG_ARGISNULL(1))
	{
		text	   *given = PG_GETARG_TEXT_PP(1);

		status = registry_status_parse_n(VARDATA_ANY(given), VARSIZE_ANY_EXHDR(given));
	}
	PG_RETURN_TEXT_P(cstring_to_text(retry_decision_name(decide_retry(state, status,
																	  retries_count,
																	  max_retries))));
}
