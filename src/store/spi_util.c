/*
 * spi_util.c — SPI helpers shared by the state machine, the event log and
 * the admin functions.
 */
#include "postgres.h"

#include "store/spi_util.h"

static SPIPlanPtr
cached_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes, int options)
{
	if (*cache == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, options);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*cache = plan;
	}
	return *cache;
}

SPIPlanPtr
spi_cached_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	return cached_plan(cache, sql, nargs, argtypes, 0);
}

SPIPlanPtr
spi_cached_generic_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	return cached_plan(cache, sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
}

void
spi_run(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only,
		long count, int expected)
{
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, count);

	if (rc != expected)
		elog(ERROR, "SPI_execute_plan returned %s", SPI_result_code_string(rc));
}

char *
spi_text(int colno)
{
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, colno);
}
