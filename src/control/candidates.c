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
#include "utils/array.h"
#include "utils/timestamp.h"

#include "control/candidates.h"
#include "store/spi_util.h"
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
 * The deny list as one array computed once per query (an init plan), so the
 * candidate is found by walking its partial index in order and stopping at
 * the first allowed row, whatever the planner knows of the deny list.
 */
#define NOT_DENIED \
	"NOT (r.root_namespace = ANY (ARRAY(SELECT root_namespace" \
	"                                   FROM registry_migration.denied_namespaces)))"

static const char *
candidate_query(Candidate kind)
{
	switch (kind)
	{
		case CANDIDATE_FINAL_IMPORT:
			return psprintf("SELECT id, path FROM registry_migration.repositories"
							" WHERE state = %s AND id <> ALL($1)"
							" ORDER BY pre_import_done_at, id LIMIT 1",
							state_sql_literal(MS_PRE_IMPORT_DONE));
		case CANDIDATE_ABORTED:
			return psprintf("SELECT id, path FROM registry_migration.repositories r"
							" WHERE state = %s AND id <> ALL($1)"
							"   AND " NOT_DENIED
							" ORDER BY aborted_at, id LIMIT 1",
							state_sql_literal(MS_IMPORT_ABORTED));
		case CANDIDATE_NEW:
			break;
	}
	return psprintf("SELECT id, path FROM registry_migration.repositories r"
					" WHERE state = %s AND id <> ALL($1)"
					"   AND ($2::timestamptz IS NULL OR created_at < $2)"
					"   AND ($3::text[] IS NULL OR coalesce(plan, 'free') = ANY ($3))"
					"   AND " NOT_DENIED
					" ORDER BY created_at, id LIMIT 1",
					state_sql_literal(MS_DEFAULT));
}

bool
candidate_next(Candidate kind, const MigrationSettings *s, const Handled *handled,
			   int64 *id, char **path)
{
	static SPIPlanPtr plans[3];
	Oid			types[3] = {INT8ARRAYOID, TIMESTAMPTZOID, TEXTARRAYOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	bool		isnull;

	values[0] = handled_array(handled);
	values[1] = TimestampTzGetDatum(s->created_before);
	nulls[1] = s->has_created_before ? ' ' : 'n';
	values[2] = s->target_plans;
	nulls[2] = s->has_target_plans ? ' ' : 'n';
	if (plans[kind] == NULL)
		spi_cached_plan(&plans[kind], candidate_query(kind),
						kind == CANDIDATE_NEW ? 3 : 1, types);
	spi_run(plans[kind], values, nulls, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	*id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*path = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	return true;
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

/* The latest time a repository entered state, from the column that records it. */
static char *
latest_entry(const char *column, MigrationState state)
{
	return psprintf("(SELECT max(%s) FROM registry_migration.repositories WHERE state = %s)",
					column, state_sql_literal(state));
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
	/*
	 * One index-backed max per state a step ends in; greatest() ignores the
	 * NULL of a state no repository is in.
	 */
	if (plan == NULL)
		spi_cached_plan(&plan,
						psprintf("SELECT greatest(%s, %s, %s, %s) > $1",
								 latest_entry("pre_import_done_at", MS_PRE_IMPORT_DONE),
								 latest_entry("import_done_at", MS_IMPORT_DONE),
								 latest_entry("aborted_at", MS_IMPORT_ABORTED),
								 latest_entry("skipped_at", MS_IMPORT_SKIPPED)),
						1, types);
	spi_run(plan, values, NULL, false, 1, SPI_OK_SELECT);
	recent = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(recent);
}
