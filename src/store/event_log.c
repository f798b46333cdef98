/*
 * event_log.c — writing and trimming registry_migration.events.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "store/event_log.h"
#include "store/settings.h"
#include "store/spi_util.h"

static Datum
text_or_null(const char *s, char *null_flag)
{
	*null_flag = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * Whether the event log has its skipped_reason column. A database still at
 * version 1.0 (the library is newer than its schema until ALTER EXTENSION
 * ... UPDATE) has none; it is asked on every write, a catalog cache look-up,
 * so an update takes effect in sessions already open.
 */
static bool
events_have_reason_column(void)
{
	Oid			relid = get_relname_relid("events", get_namespace_oid("registry_migration", false));

	return OidIsValid(relid) && get_attnum(relid, "skipped_reason") != InvalidAttrNumber;
}

static void
insert_event(int64 repository_id, const char *path, MigrationState old_state,
			 MigrationState new_state, const char *event, const SkipReason *reason,
			 const EventNote *note, TimestampTz at)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_without_reason = NULL;
	Oid			types[11] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, INT4OID, TEXTOID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[11];
	char		nulls[11];
	bool		with_reason = events_have_reason_column();
	SPIPlanPtr	chosen;

	if (with_reason)
		chosen = spi_cached_plan(&plan,
								 "INSERT INTO registry_migration.events"
								 " (repository_id, path, old_state, new_state, cause, event,"
								 "  registry_status, http_status, detail, at, skipped_reason)"
								 " VALUES ($1, $2, $3::registry_migration.migration_state,"
								 "  $4::registry_migration.migration_state, $5, $6, $7, $8, $9, $10,"
								 "  $11::registry_migration.skip_reason)",
								 11, types);
	else
		chosen = spi_cached_plan(&plan_without_reason,
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
	values[10] = text_or_null(reason ? skip_reason_name(*reason) : NULL, &nulls[10]);
	spi_run(chosen, values, nulls, false, 0, SPI_OK_INSERT);
}

void
event_log_write(int64 repository_id, const char *path, const TransitionStep *step,
				const EventNote *note, TimestampTz at)
{
	insert_event(repository_id, path, step->old_state, step->new_state,
				 migration_event_name(step->event), step->has_reason ? &step->reason : NULL,
				 note, at);
}

void
event_log_no_change(int64 repository_id, const char *path, MigrationState state,
					const char *event, const EventNote *note)
{
	insert_event(repository_id, path, state, state, event, NULL, note, GetCurrentTimestamp());
}

bool
event_log_since_last_change(int64 repository_id, MigrationState state, const char *event)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3] = {Int64GetDatum(repository_id),
		CStringGetTextDatum(migration_state_name(state)), CStringGetTextDatum(event)};
	bool		isnull;

	/* Both look-ups walk the repository's events backwards by its index. */
	spi_cached_plan(&plan,
					"SELECT EXISTS (SELECT FROM registry_migration.events e"
					"  WHERE e.repository_id = $1 AND e.event = $3"
					"    AND e.old_state = $2::registry_migration.migration_state"
					"    AND e.id > coalesce((SELECT max(c.id) FROM registry_migration.events c"
					"                          WHERE c.repository_id = $1"
					"                            AND c.old_state <> c.new_state), 0))",
					3, types);
	/* Not read-only: what this transaction recorded already counts. */
	spi_run(plan, values, NULL, false, 1, SPI_OK_SELECT);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
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
	 * The chosen ids are removed through the primary key as an array:
	 * written as "id IN (subquery)", the planner could join them to a
	 * sequential scan of the whole log whenever any row was old enough,
	 * which, once a migration is older than its retention, is at nearly
	 * every cycle. Its generic plan suits every batch size, and keeps the
	 * cycles from planning the statement again each time.
	 */
	spi_cached_generic_plan(&plan,
							"DELETE FROM registry_migration.events WHERE id = ANY (ARRAY("
							" SELECT id FROM registry_migration.events"
							" WHERE at < (SELECT clock_timestamp()"
							"   - least(event_retention, interval '" SETTINGS_MAX_INTERVAL "')"
							"   FROM registry_migration.settings)"
							" ORDER BY at LIMIT $1))",
							1, types);
	spi_run(plan, values, NULL, false, 0, SPI_OK_DELETE);
	return (int64) SPI_processed;
}
