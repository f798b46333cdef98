/*
 * state_machine.c — loading, changing and storing a repository's state.
 *
 * The rules live in transitions.c (pure C); this file moves rows between
 * the table and RepositoryRow and records every step in the event log.
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "store/settings.h"
#include "store/spi_util.h"
#include "store/state_machine.h"
#include "store/commit_signal.h"

/* Column numbers in REPOSITORY_COLUMNS; the six timestamps follow STATE. */
enum
{
	COL_ID = 1,
	COL_PATH,
	COL_STATE,
	COL_FIRST_TIME,
	COL_RETRIES = COL_FIRST_TIME + 6,
	COL_SKIPPED_REASON,
	COL_ABORTED_IN_STATE,
	COL_CONSECUTIVE_429S,
	COL_XMIN
};

/* The six timestamp columns, in the order of REPOSITORY_COLUMNS. */
static OptionalTime *
row_time(RepositoryRow *row, int i)
{
	OptionalTime *times[6] = {&row->pre_import_started_at, &row->pre_import_done_at,
		&row->import_started_at, &row->import_done_at,
	&row->aborted_at, &row->skipped_at};

	return times[i];
}

static MigrationState
state_column(int colno)
{
	char	   *label = spi_text(colno);
	MigrationState state;

	if (!migration_state_from_name(label, &state))
		elog(ERROR, "unknown migration state \"%s\"", label);
	return state;
}

void
repository_from_spi_row(Repository *repo)
{
	HeapTuple	tuple = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	RepositoryRow *row = &repo->row;
	bool		isnull;
	char	   *reason;

	memset(repo, 0, sizeof(*repo));
	repo->id = DatumGetInt64(SPI_getbinval(tuple, desc, COL_ID, &isnull));
	repo->path = spi_text(COL_PATH);
	row->state = state_column(COL_STATE);
	for (int i = 0; i < 6; i++)
	{
		Datum		at = SPI_getbinval(tuple, desc, COL_FIRST_TIME + i, &isnull);

		row_time(row, i)->set = !isnull;
		row_time(row, i)->at = isnull ? 0 : DatumGetTimestampTz(at);
	}
	row->retries_count = DatumGetInt32(SPI_getbinval(tuple, desc, COL_RETRIES, &isnull));
	reason = spi_text(COL_SKIPPED_REASON);
	row->has_skipped_reason = reason != NULL;
	if (reason && !skip_reason_from_name(reason, &row->skipped_reason))
		elog(ERROR, "unknown skip reason \"%s\"", reason);
	row->has_aborted_in_state = SPI_getvalue(tuple, desc, COL_ABORTED_IN_STATE) != NULL;
	if (row->has_aborted_in_state)
		row->aborted_in_state = state_column(COL_ABORTED_IN_STATE);
	repo->consecutive_429s = DatumGetInt32(SPI_getbinval(tuple, desc, COL_CONSECUTIVE_429S, &isnull));
	repo->xmin = DatumGetTransactionId(SPI_getbinval(tuple, desc, COL_XMIN, &isnull));
}

/*
 * Read the row whose key_column equals key, locked FOR UPDATE when lock is
 * set; false when there is none.
 */
static bool
read_by(SPIPlanPtr *plan, const char *key_column, Oid key_type, Datum key, bool lock,
		Repository *repo)
{
	Datum		values[1] = {key};

	if (*plan == NULL)
		spi_cached_plan(plan,
						psprintf("SELECT " REPOSITORY_COLUMNS " FROM registry_migration.repositories"
								 " WHERE %s = $1%s", key_column, lock ? " FOR UPDATE" : ""),
						1, &key_type);
	spi_run(*plan, values, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	repository_from_spi_row(repo);
	repo->locked = lock;
	return true;
}

bool
repository_lock_by_path(const char *path, Repository *repo)
{
	static SPIPlanPtr plan = NULL;

	return read_by(&plan, "path", TEXTOID, CStringGetTextDatum(path), true, repo);
}

bool
repository_lock_by_id(int64 id, Repository *repo)
{
	static SPIPlanPtr plan = NULL;

	return read_by(&plan, "id", INT8OID, Int64GetDatum(id), true, repo);
}

bool
repository_read_by_id(int64 id, Repository *repo)
{
	static SPIPlanPtr plan = NULL;

	return read_by(&plan, "id", INT8OID, Int64GetDatum(id), false, repo);
}

bool
repository_read_by_path(const char *path, Repository *repo)
{
	static SPIPlanPtr plan = NULL;

	return read_by(&plan, "path", TEXTOID, CStringGetTextDatum(path), false, repo);
}

static bool
same_time(const OptionalTime *a, const OptionalTime *b)
{
	return a->set == b->set && (!a->set || a->at == b->at);
}

/* The same migration state: what the cycles decide on. */
static bool
same_migration_state(RepositoryRow *a, RepositoryRow *b)
{
	if (a->state != b->state || a->retries_count != b->retries_count)
		return false;
	for (int i = 0; i < 6; i++)
		if (!same_time(row_time(a, i), row_time(b, i)))
			return false;
	return true;
}

void
repository_lock_unchanged(Repository *repo)
{
	Repository	now;

	if (repo->locked)
		return;
	if (!repository_lock_by_id(repo->id, &now))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("repository \"%s\" was deleted while the registry was being asked",
						repo->path)));
	if (!same_migration_state(&repo->row, &now.row))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("repository \"%s\" changed while the registry was being asked",
						repo->path),
				 errdetail("It was %s and is now %s.", migration_state_name(repo->row.state),
						   migration_state_name(now.row.state))));
	*repo = now;
}

/*
 * Write the repository's row. Unless it is locked, only if it is still the
 * version read (the same xmin): true when the row was written, and is now
 * locked. A change made meanwhile, even one that left the migration state
 * as it was, makes it write nothing.
 */
static bool
store_row(Repository *repo)
{
	static SPIPlanPtr plans[2];
	bool		guarded = !repo->locked;
	Oid			types[12] = {INT8OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	INT4OID, TEXTOID, TEXTOID, XIDOID};
	Datum		values[12];
	char		nulls[12];
	RepositoryRow row = repo->row;

	if (plans[guarded] == NULL)
		spi_cached_plan(&plans[guarded],
						psprintf("UPDATE registry_migration.repositories SET"
								 " state = $2::registry_migration.migration_state,"
								 " pre_import_started_at = $3, pre_import_done_at = $4,"
								 " import_started_at = $5, import_done_at = $6,"
								 " aborted_at = $7, skipped_at = $8, retries_count = $9,"
								 " skipped_reason = $10::registry_migration.skip_reason,"
								 " aborted_in_state = $11::registry_migration.migration_state"
								 " WHERE id = $1%s",
								 guarded ? " AND xmin = $12" : ""),
						guarded ? 12 : 11, types);
	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int64GetDatum(repo->id);
	values[1] = CStringGetTextDatum(migration_state_name(row.state));
	for (int i = 0; i < 6; i++)
	{
		values[2 + i] = TimestampTzGetDatum(row_time(&row, i)->at);
		nulls[2 + i] = row_time(&row, i)->set ? ' ' : 'n';
	}
	values[8] = Int32GetDatum(row.retries_count);
	values[9] = row.has_skipped_reason ?
		CStringGetTextDatum(skip_reason_name(row.skipped_reason)) : (Datum) 0;
	nulls[9] = row.has_skipped_reason ? ' ' : 'n';
	values[10] = row.has_aborted_in_state ?
		CStringGetTextDatum(migration_state_name(row.aborted_in_state)) : (Datum) 0;
	nulls[10] = row.has_aborted_in_state ? ' ' : 'n';
	values[11] = TransactionIdGetDatum(repo->xmin);
	spi_run(plans[guarded], values, nulls, false, 0, SPI_OK_UPDATE);
	if (SPI_processed == 0)
		return false;
	repo->locked = true;
	return true;
}

/* Write the changed row and one event per step of the change. */
static bool
store_change(Repository *repo, const TransitionOutcome *outcome, const EventNote *note,
			 TimestampTz now)
{
	if (!store_row(repo))
		return false;
	/* A finished step frees a slot or calls for a final import: wake the worker. */
	if (repo->row.state == MS_PRE_IMPORT_DONE || repo->row.state == MS_IMPORT_DONE ||
		repo->row.state == MS_IMPORT_ABORTED || repo->row.state == MS_IMPORT_SKIPPED)
		commit_signal_raise();
	for (int i = 0; i < outcome->nsteps; i++)
		event_log_write(repo->id, repo->path, &outcome->steps[i], note, now);
	return true;
}

/*
 * A row read without a lock is changed in one statement when it is still
 * the version read: the change costs no statement to lock it first. False
 * when it was not written (changed meanwhile, or the event is refused),
 * with *repo as it was: the caller takes the locked way, which sees why.
 */
static bool
apply_unlocked(Repository *repo, const TransitionRequest *request, const EventNote *note,
			   const MigrationSettings *settings, TransitionOutcome *outcome)
{
	Repository	changed = *repo;
	TimestampTz now = GetCurrentTimestamp();

	*outcome = transition_apply(&changed.row, request, settings->max_retries, now);
	if (!outcome->allowed || !store_change(&changed, outcome, note, now))
		return false;
	*repo = changed;
	return true;
}

TransitionOutcome
repository_apply(Repository *repo, const TransitionRequest *request, const EventNote *note,
				 const MigrationSettings *settings)
{
	TimestampTz now;
	TransitionOutcome outcome;

	if (!repo->locked && apply_unlocked(repo, request, note, settings, &outcome))
		return outcome;
	repository_lock_unchanged(repo);
	/* The time of the change itself (clock_timestamp()), not of the transaction. */
	now = GetCurrentTimestamp();
	outcome = transition_apply(&repo->row, request, settings->max_retries, now);
	if (outcome.allowed)
		(void) store_change(repo, &outcome, note, now);
	return outcome;
}

TransitionOutcome
repository_apply_or_error(Repository *repo, const TransitionRequest *request,
						  const EventNote *note, const MigrationSettings *settings)
{
	TransitionOutcome outcome = repository_apply(repo, request, note, settings);

	if (!outcome.allowed)
		repository_refused_error(repo, request->event);
	return outcome;
}

void
repository_set_consecutive_429s(Repository *repo, int32 count)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(repo->id), Int32GetDatum(count)};

	repository_lock_unchanged(repo);
	if (repo->consecutive_429s == count)
		return;
	spi_cached_plan(&plan,
					"UPDATE registry_migration.repositories SET consecutive_429s = $2 WHERE id = $1",
					2, types);
	spi_run(plan, values, NULL, false, 0, SPI_OK_UPDATE);
	repo->consecutive_429s = count;
}

void
repository_refused_error(const Repository *repo, MigrationEvent event)
{
	char		allowed[256];

	event_allowed_states_text(event, allowed, sizeof(allowed));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("%s is not allowed for repository \"%s\" in state %s",
					migration_event_name(event), repo->path,
					migration_state_name(repo->row.state)),
			 errdetail("It is allowed only from %s.", allowed)));
}
