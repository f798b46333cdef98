/*
 * settings.c — loading registry_migration.settings into C.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/datum.h"

#include "store/settings.h"
#include "store/spi_util.h"

enum
{
	COL_ENABLED = 1,
	COL_CAPACITY,
	COL_MAX_RETRIES,
	COL_START_MAX_RETRIES,
	COL_MAX_STEP_DURATION,
	COL_PRE_IMPORT_TIMEOUT,
	COL_IMPORT_TIMEOUT,
	COL_TAGS_RATE,
	COL_MAX_TAGS_COUNT,
	COL_CREATED_BEFORE,
	COL_TARGET_PLANS,
	COL_WAITING_TIME,
	COL_GUARD_BATCH_SIZE
};

/* An interval column as float8 seconds, at most SETTINGS_MAX_INTERVAL. */
#define SECONDS(column) \
	"extract(epoch FROM least(" column ", interval '" SETTINGS_MAX_INTERVAL "'))::float8"

static Datum
column(int colno, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, colno, isnull);
}

MigrationSettings
settings_load(void)
{
	static SPIPlanPtr plan = NULL;
	MigrationSettings s = {0};
	bool		isnull;
	Datum		plans;

	/*
	 * Intervals as seconds: the cycles compare them with ages in seconds.
	 * The table accepts values no arithmetic on timestamps survives (an
	 * interval of 10 000 years, a rate of 1e400 seconds per tag): they are
	 * capped where the cap changes nothing in practice, so a stored value
	 * can never make every cycle and notification fail.
	 */
	spi_cached_plan(&plan,
					"SELECT enabled, capacity, max_retries, start_max_retries, "
					SECONDS("max_step_duration") ", "
					SECONDS("pre_import_timeout") ", "
					SECONDS("import_timeout") ","
					" CASE WHEN pre_import_tags_rate < " SETTINGS_MIN_TAGS_RATE " THEN 0"
					"  ELSE least(pre_import_tags_rate, " SETTINGS_MAX_TAGS_RATE ") END::float8,"
					" max_tags_count, created_before, target_plans, "
					SECONDS("enqueue_waiting_time") ", guard_batch_size"
					" FROM registry_migration.settings",
					0, NULL);
	spi_run(plan, NULL, NULL, true, 1, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("registry_migration.settings has no row"),
				 errhint("Insert one: INSERT INTO registry_migration.settings DEFAULT VALUES.")));
	s.enabled = DatumGetBool(column(COL_ENABLED, &isnull));
	s.capacity = DatumGetInt32(column(COL_CAPACITY, &isnull));
	s.max_retries = DatumGetInt32(column(COL_MAX_RETRIES, &isnull));
	s.start_max_retries = DatumGetInt32(column(COL_START_MAX_RETRIES, &isnull));
	s.max_step_duration_s = DatumGetFloat8(column(COL_MAX_STEP_DURATION, &isnull));
	s.pre_import_timeout_s = DatumGetFloat8(column(COL_PRE_IMPORT_TIMEOUT, &isnull));
	s.import_timeout_s = DatumGetFloat8(column(COL_IMPORT_TIMEOUT, &isnull));
	s.pre_import_tags_rate = DatumGetFloat8(column(COL_TAGS_RATE, &isnull));
	s.max_tags_count = DatumGetInt32(column(COL_MAX_TAGS_COUNT, &isnull));
	s.created_before = DatumGetTimestampTz(column(COL_CREATED_BEFORE, &s.has_created_before));
	s.has_created_before = !s.has_created_before;
	plans = column(COL_TARGET_PLANS, &isnull);
	s.has_target_plans = !isnull;
	/* The array lives in SPI memory; copy it out for use after SPI_finish. */
	s.target_plans = isnull ? (Datum) 0 : SPI_datumTransfer(plans, false, -1);
	s.enqueue_waiting_time_s = DatumGetFloat8(column(COL_WAITING_TIME, &isnull));
	s.guard_batch_size = DatumGetInt32(column(COL_GUARD_BATCH_SIZE, &isnull));
	return s;
}
