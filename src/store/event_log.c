/*
 * event_log.c — writing and trimming registry_migration.events.
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "store/event_log.h"
#include "store/settings.h"
#include "store/spi_util.h"
#include "store/enum_datums.h"

/* Labels of the events.cause CHECK constraint. */
static const char *const cause_names[] = {
	[CAUSE_GUARD] = "guard",
	[CAUSE_ENQUEUER] = "enqueuer",
	[CAUSE_NOTIFICATION] = "notification",
	[CAUSE_ADMIN] = "admin",
};

static Datum
text_or_null(const char *s, char *null_flag)
{
	*null_flag = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

void
event_log_write(int64 repository_id, const char *path,
				MigrationState old_state, MigrationState new_state,
				const char *event, const EventNote *note, TimestampTz at)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[10] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, INT4OID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[10];
	char		nulls[10];

	spi_cached_plan(&plan,
					"INSERT INTO registry_migration.events"
					" (repository_id, path, old_state, new_state, cause, event,"
					"  registry_status, http_status, detail, at)"
					" VALUES ($1, $2, $3::registry_migration.migration_state,"
					"  $4::registry_migration.migration_state, $5, $6, $7, $8, $9, $10)",
					10, types);
	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int64GetDatum(repository_id);
	values[1] = CStringGetTextDatum(path);
	values[2] = CStringGetTextDatum(migration_state_name(old_state));
	values[3] = CStringGetTextDatum(migration_state_name(new_state));
	values[4] = CStringGetTextDatum(cause_names[note->cause]);
	values[5] = CStringGetTextDatum(event);
	values[6] = text_or_null(note->registry_status, &nulls[6]);
	values[7] = Int32GetDatum(note->http_status);
	nulls[7] = note->http_status ? ' ' : 'n';
	values[8] = text_or_null(note->detail, &nulls[8]);
	values[9] = TimestampTzGetDatum(at);
	spi_run(plan, values, nulls, false, 0, SPI_OK_INSERT);
}

int64
event_log_purge(int max_rows)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(max_rows)};

	/*
	 * Oldest first through the index on "at", so each batch is cheap: the
	 * cutoff is computed once (an init plan), which lets it be an index
	 * condition — clock_timestamp() in the comparison itself could not be.
	 */
	spi_cached_plan(&plan,
					"DELETE FROM registry_migration.events WHERE id IN ("
					" SELECT id FROM registry_migration.events"
					" WHERE at < (SELECT clock_timestamp()"
					"   - least(event_retention, interval '" SETTINGS_MAX_INTERVAL "')"
					"   FROM registry_migration.settings)"
					" ORDER BY at LIMIT $1)",
					1, types);
	spi_run(plan, values, NULL, false, 0, SPI_OK_DELETE);
	return (int64) SPI_processed;
}

PG_FUNCTION_INFO_V1(rm_purge_events);

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
