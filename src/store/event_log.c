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
	values[4] = CStringGetTextDatum(event_cause_name(note->cause));
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
