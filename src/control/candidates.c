/*
 * candidates.c — the enqueuer's selections.
 *
 * States are written into the statements from the C name table (they are
 * literals, not parameters, so each selection is served by its partial
 * index); the statements are built once per backend, with their plans.
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/timestamp.h"

#include "control/candidates.h"
#include "store/spi_util.h"
#include "store/state_machine.h"
#include "store/state_sql.h"

void
handled_remember(Handled *handled, int64 id)
{
	if (handled->count == handled->size)
	{
		handled->size = Max(16, handled->size * 2);
		handled->ids = handled->ids ? repalloc(handled->ids, sizeof(int64) * handled->size)
			: MemoryContextAlloc(handled->memory, sizeof(int64) * handled->size);
	}
	handled->ids[handled->count++] = id;
}

static Datum
handled_array(const Handled *handled)
{
	Datum	   *elements = palloc(sizeof(Datum) * Max(handled->count, 1));

	for (int i = 0; i < handled->count; i++)
		elements[i] = Int64GetDatum(handled->ids[i]);
	return PointerGetDatum(construct_array(elements, handled->count, INT8OID, 8, true, TYPALIGN_DOUBLE));
}

/*
 * The deny-list check, as a scalar subquery so that the planner gives it an
 * ordinary selectivity. It cannot know how many rows the deny list removes;
 * written as a plain condition, where the table's repositories share one or
 * two root namespaces its estimate was "nearly all", and it sorted every
 * repository of the state for each candidate instead of walking the state's
 * partial index in order and stopping at the first allowed row.
 */
#define NOT_DENIED \
	"(SELECT NOT EXISTS (SELECT FROM registry_migration.denied_namespaces d" \
	"                     WHERE d.root_namespace = r.root_namespace))"

/*
 * The registry's cool-down after a canceled pre-import lasts about 5 s from
 * the cancel, and the cancel comes before the abort (the guard cancels, then
 * aborts; the registry's own cancel is reported after it happened). So an
 * aborted repository answered 429 ("not ready", most often) is left alone
 * for that long per 429 in a row, counted from its abort: once the
 * cool-down is over it is taken as soon as it can be, and asked again
 * 5 s later if the registry still says "not ready", rather than at every
 * wake, which would only spend 429s towards the abort at start_max_retries.
 * The hold ends 10 s after the abort at the latest: an aborted repository
 * may wait that long, and no longer, before the oldest is retried first
 * again, whatever count of 429s a direct change of the table wrote.
 */
#define NOT_READY_HOLD "interval '5 seconds'"
#define NOT_READY_HOLDS_AT_MOST "2"

/*
 * When an aborted repository (alias r) held back is due again. The
 * operators are named: an integer times an interval has no operator of
 * its own in pg_catalog, and one of that exact type elsewhere would win.
 */
#define HELD_UNTIL \
	"(r.aborted_at + (least(r.consecutive_429s, " NOT_READY_HOLDS_AT_MOST ")" \
	"                 OPERATOR(pg_catalog.*) " NOT_READY_HOLD "))"

/*
 * An aborted repository (alias r) answered 429, within its hold. The bound
 * on aborted_at, implied by the rest, lets the index on it serve:
 * clock_timestamp() in a condition cannot (statement_timestamp() is never
 * later).
 */
#define HELD_BACK \
	"(r.consecutive_429s > 0" \
	" AND r.aborted_at > statement_timestamp() - (" NOT_READY_HOLDS_AT_MOST \
	"                    OPERATOR(pg_catalog.*) " NOT_READY_HOLD ")" \
	" AND " HELD_UNTIL " > clock_timestamp())"

static const char *
candidate_query(Candidate kind)
{
	switch (kind)
	{
		case CANDIDATE_FINAL_IMPORT:
			return psprintf("SELECT " REPOSITORY_COLUMNS " FROM registry_migration.repositories"
							" WHERE state = %s AND id <> ALL($1)"
							" ORDER BY pre_import_done_at, id LIMIT 1",
							state_sql_literal(MS_PRE_IMPORT_DONE));
		case CANDIDATE_ABORTED:

			/*
			 * One answered "not ready" (the registry's cool-down after a
			 * canceled pre-import) is left alone for a while after its
			 * abort (HELD_BACK): asked again at every wake it would only
			 * collect 429s — and at the limit of 429s in a row an abort
			 * that spends a retry.
			 */
			return psprintf("SELECT " REPOSITORY_COLUMNS " FROM registry_migration.repositories r"
							" WHERE state = %s AND id <> ALL($1)"
							"   AND " NOT_DENIED
							"   AND NOT " HELD_BACK
							" ORDER BY aborted_at, id LIMIT 1",
							state_sql_literal(MS_IMPORT_ABORTED));
		case CANDIDATE_NEW:
			break;
	}
	return psprintf("SELECT " REPOSITORY_COLUMNS " FROM registry_migration.repositories r"
					" WHERE state = %s AND id <> ALL($1)"
					"   AND ($2::timestamptz IS NULL OR created_at < $2)"
					"   AND ($3::text[] IS NULL OR coalesce(plan, 'free') = ANY ($3))"
					"   AND " NOT_DENIED
					" ORDER BY created_at, id LIMIT 1",
					state_sql_literal(MS_DEFAULT));
}

bool
candidate_next(Candidate kind, const MigrationSettings *s, const Handled *handled,
			   Repository *repo)
{
	static SPIPlanPtr plans[3];
	Oid			types[3] = {INT8ARRAYOID, TIMESTAMPTZOID, TEXTARRAYOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	MemoryContext caller_context;

	values[0] = handled_array(handled);
	values[1] = TimestampTzGetDatum(s->created_before);
	nulls[1] = s->has_created_before ? ' ' : 'n';
	values[2] = s->target_plans;
	nulls[2] = s->has_target_plans ? ' ' : 'n';
	/*
	 * Generic plans: the walk down the state's index suits every value of
	 * the parameters, and planning at each call cost more than running.
	 */
	if (plans[kind] == NULL)
		spi_cached_generic_plan(&plans[kind], candidate_query(kind),
								kind == CANDIDATE_NEW ? 3 : 1, types);
	spi_run(plans[kind], values, nulls, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	caller_context = MemoryContextSwitchTo(handled->memory);
	repository_from_spi_row(repo);
	MemoryContextSwitchTo(caller_context);
	return true;
}

TimestampTz
held_until(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	Datum		until;

	if (plan == NULL)
		spi_cached_plan(&plan,
						psprintf("SELECT min" HELD_UNTIL
								 "  FROM registry_migration.repositories r"
								 " WHERE r.state = %s AND " HELD_BACK " AND " NOT_DENIED,
								 state_sql_literal(MS_IMPORT_ABORTED)),
						0, NULL);
	spi_run(plan, NULL, NULL, false, 1, SPI_OK_SELECT);
	until = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(until);
}

int64
count_in_process(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;

	if (plan == NULL)
		spi_cached_plan(&plan,
						psprintf("SELECT count(*) FROM registry_migration.repositories"
								 " WHERE state IN (%s)",
								 state_sql_list(migration_state_in_process)),
						0, NULL);
	spi_run(plan, NULL, NULL, false, 1, SPI_OK_SELECT);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * The states a step ends in, each with the column that records entering it.
 * The waiting time reads all four columns of rows in any of these states.
 */
static const struct
{
	MigrationState state;
	const char *column;
}			finish_columns[] = {
	{MS_PRE_IMPORT_DONE, "pre_import_done_at"},
	{MS_IMPORT_DONE, "import_done_at"},
	{MS_IMPORT_ABORTED, "aborted_at"},
	{MS_IMPORT_SKIPPED, "skipped_at"},
};

#define FINISH_STATES lengthof(finish_columns)

/* The latest time a repository entered state, from the column that records it. */
static char *
latest_entry(int i)
{
	return psprintf("(SELECT max(%s) FROM registry_migration.repositories WHERE state = %s)",
					finish_columns[i].column, state_sql_literal(finish_columns[i].state));
}

/*
 * The latest finish recorded in a column other than the row's own state's:
 * only a direct change of the table leaves one later than the own column.
 * Written exactly as the expression and predicate of the partial index
 * repositories_later_finish, which holds only such rows, so that the planner
 * reads its last entry.
 */
static char *
latest_other_finish(void)
{
	StringInfoData latest;
	StringInfoData own;

	initStringInfo(&latest);
	initStringInfo(&own);
	appendStringInfoString(&own, "CASE state");
	for (int i = 0; i < FINISH_STATES; i++)
	{
		appendStringInfo(&latest, "%s%s", i > 0 ? ", " : "greatest(", finish_columns[i].column);
		appendStringInfo(&own, " WHEN %s THEN %s", state_sql_literal(finish_columns[i].state),
						 finish_columns[i].column);
	}
	appendStringInfoString(&latest, ")");
	appendStringInfoString(&own, " END");
	return psprintf("(SELECT max(%s) FROM registry_migration.repositories WHERE %s > %s)",
					latest.data, latest.data, own.data);
}

/*
 * The most recent finish of any repository in a state a step ends in, from
 * any of the four columns: a row's latest finish is either its own state's
 * column (one index-backed max per state) or one of the rare later ones.
 * greatest() ignores the NULL of a state no repository is in.
 */
static char *
waiting_query(void)
{
	StringInfoData query;

	initStringInfo(&query);
	appendStringInfoString(&query, "SELECT greatest(");
	for (int i = 0; i < FINISH_STATES; i++)
		appendStringInfo(&query, "%s, ", latest_entry(i));
	appendStringInfo(&query, "%s) > $1", latest_other_finish());
	return query.data;
}

bool
waiting_after_finish(const MigrationSettings *s)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		values[1];
	bool		isnull;
	Datum		recent;

	if (s->enqueue_waiting_time_s <= 0)
		return false;
	values[0] = TimestampTzGetDatum(GetCurrentTimestamp() -
									(int64) (s->enqueue_waiting_time_s * USECS_PER_SEC));
	if (plan == NULL)
		spi_cached_plan(&plan, waiting_query(), 1, types);
	spi_run(plan, values, NULL, false, 1, SPI_OK_SELECT);
	recent = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(recent);
}
