/*
 * backoff.c — reading and recording the registry's Retry-After.
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"

#include "store/backoff.h"
#include "store/spi_util.h"

bool
backoff_pending(TimestampTz *until)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	Datum		value;

	spi_cached_plan(&plan,
					"SELECT retry_after_until FROM registry_migration.registry_state"
					" WHERE retry_after_until > clock_timestamp()",
					0, NULL);
	spi_run(plan, NULL, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*until = DatumGetTimestampTz(value);
	return true;
}

TimestampTz
backoff_record(int64 seconds)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TIMESTAMPTZOID};
	TimestampTz until = GetCurrentTimestamp() +
		Min(Max(seconds, 0), BACKOFF_MAX_S) * USECS_PER_SEC;
	Datum		values[1] = {TimestampTzGetDatum(until)};

	/* A later Retry-After wins over an earlier one still pending. */
	spi_cached_plan(&plan,
					"UPDATE registry_migration.registry_state"
					" SET retry_after_until = greatest(retry_after_until, $1)",
					1, types);
	spi_run(plan, values, NULL, false, 0, SPI_OK_UPDATE);
	return until;
}
