/*
 * count_trigger.c — count_state_changes(), the statement-level AFTER
 * trigger that keeps the per-state counts of registry_migration.repositories
 * in state_count_deltas (the install script explains the scheme).
 *
 * Every change of a repository's state runs it, so it does its counting
 * here in C: it reads the statement's transition tables directly and
 * appends the net change per state with one prepared statement. (Written
 * as a query over the transition tables, the aggregation cost about as much
 * as the UPDATE that fired it.) It runs with the extension owner's rights,
 * so that no writer needs a grant on the counts, and only ever appends what
 * the statement itself changed.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "store/spi_util.h"

PG_FUNCTION_INFO_V1(rm_count_state_changes);

/* Every FOLD_EVERY-th appending statement folds the deltas. */
#define FOLD_EVERY 64

/* The net change of the statement, per state (an enum value's OID). */
typedef struct StateDeltas
{
	int			count;
	int			size;
	Oid		   *states;
	int64	   *deltas;
} StateDeltas;

static void
delta_add(StateDeltas *d, Oid state, int64 by)
{
	for (int i = 0; i < d->count; i++)
		if (d->states[i] == state)
		{
			d->deltas[i] += by;
			return;
		}
	if (d->count == d->size)
	{
		d->size = d->size ? d->size * 2 : 8;
		d->states = d->states ? repalloc(d->states, sizeof(Oid) * d->size)
			: palloc(sizeof(Oid) * d->size);
		d->deltas = d->deltas ? repalloc(d->deltas, sizeof(int64) * d->size)
			: palloc(sizeof(int64) * d->size);
	}
	d->states[d->count] = state;
	d->deltas[d->count++] = by;
}

/*
 * Add sign for the state of every row of a transition table. It is read
 * through a read pointer of its own, as the executor reads one, so that
 * another trigger of the statement reading the same table is not disturbed.
 */
static void
count_rows(Tuplestorestate *rows, TupleDesc desc, int sign, StateDeltas *d)
{
	AttrNumber	state_column = SPI_fnumber(desc, "state");
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);

	if (state_column <= 0)
		elog(ERROR, "repositories has no column \"state\"");
	tuplestore_select_read_pointer(rows, tuplestore_alloc_read_pointer(rows, EXEC_FLAG_REWIND));
	tuplestore_rescan(rows);
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		bool		isnull;
		Datum		state = slot_getattr(slot, state_column, &isnull);

		if (!isnull)			/* NOT NULL: never */
			delta_add(d, DatumGetObjectId(state), sign);
	}
	ExecDropSingleTupleTableSlot(slot);
}

/* Append the states whose count changed; false when none did. */
static bool
append_deltas(const StateDeltas *d)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TEXTARRAYOID, INT8ARRAYOID};
	Datum	   *labels = palloc(sizeof(Datum) * Max(d->count, 1));
	Datum	   *deltas = palloc(sizeof(Datum) * Max(d->count, 1));
	Datum		values[2];
	int			n = 0;

	for (int i = 0; i < d->count; i++)
		if (d->deltas[i] != 0)
		{
			labels[n] = CStringGetTextDatum(DatumGetCString(
															DirectFunctionCall1(enum_out, ObjectIdGetDatum(d->states[i]))));
			deltas[n++] = Int64GetDatum(d->deltas[i]);
		}
	if (n == 0)
		return false;
	values[0] = PointerGetDatum(construct_array(labels, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(deltas, n, INT8OID, 8, FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));

	/*
	 * The states travel as text, cast by name when the statement is
	 * planned, so that a plan kept across a re-created extension still
	 * names the current type.
	 */
	spi_cached_plan(&plan,
					"INSERT INTO registry_migration.state_count_deltas (state, delta)"
					" SELECT s::registry_migration.migration_state, d"
					"   FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS u(s, d)",
					2, types);
	spi_run(plan, values, NULL, false, 0, SPI_OK_INSERT);
	return true;
}

/*
 * Fold every FOLD_EVERY-th appending statement, in READ COMMITTED only:
 * the fold skips rows other transactions are folding, which a stricter
 * isolation level would answer with a serialization failure.
 */
static void
fold_now_and_then(Relation repositories)
{
	Oid			appends = get_relname_relid("state_count_appends",
											RelationGetNamespace(repositories));

	if (!OidIsValid(appends))
		elog(ERROR, "sequence state_count_appends is missing");
	if (nextval_internal(appends, true) % FOLD_EVERY != 0 || XactIsoLevel != XACT_READ_COMMITTED)
		return;
	if (SPI_execute("SELECT registry_migration.fold_state_counts()", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "fold_state_counts() failed");
}

/*
 * TRUNCATE: every writer and every fold holds a lock on repositories that
 * the TRUNCATE's lock excludes, so no delta is uncommitted now. At READ
 * COMMITTED a statement's snapshot, taken after that lock, sees them all;
 * at a stricter level the snapshot may be older, and only TRUNCATE takes
 * every row (it also keeps readers of the counts waiting until the end of
 * the transaction).
 */
static void
forget_all(void)
{
	bool		read_committed = XactIsoLevel == XACT_READ_COMMITTED;

	if (SPI_execute(read_committed ? "DELETE FROM registry_migration.state_count_deltas"
					: "TRUNCATE registry_migration.state_count_deltas", false, 0) < 0)
		elog(ERROR, "could not empty state_count_deltas");
}

Datum
rm_count_state_changes(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	StateDeltas deltas = {0};

	if (!CALLED_AS_TRIGGER(fcinfo) || TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("count_state_changes() must be called as an AFTER statement trigger")));

	desc = RelationGetDescr(trigdata->tg_relation);
	SPI_connect();
	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		forget_all();
	else
	{
		if (trigdata->tg_oldtable)
			count_rows(trigdata->tg_oldtable, desc, -1, &deltas);
		if (trigdata->tg_newtable)
			count_rows(trigdata->tg_newtable, desc, 1, &deltas);
		if (append_deltas(&deltas))
			fold_now_and_then(trigdata->tg_relation);
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}
