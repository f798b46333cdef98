/*
 * enum_datums.c — SQL enum values to C enums and back.
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

#include "sql/enum_datums.h"

static char *
enum_label(Datum value)
{
	return DatumGetCString(DirectFunctionCall1(enum_out, value));
}

/* A label of the SQL type the C name table lacks: the library is older than the schema. */
static void
unknown_label(const char *what, Datum value)
{
	elog(ERROR, "%s \"%s\" is unknown to the extension's library", what, enum_label(value));
}

/* The label is left to the memory context: these run once per call or per new Oid. */
MigrationState
migration_state_from_datum(Datum value)
{
	MigrationState state = MS_DEFAULT;

	if (!migration_state_from_name(enum_label(value), &state))
		unknown_label("migration state", value);
	return state;
}

/* Enum Oid of each state, filled in as the states are met. */
typedef struct StateOidCache
{
	Oid			oids[MS_COUNT];
} StateOidCache;

MigrationState
migration_state_from_datum_cached(FmgrInfo *flinfo, Datum value)
{
	StateOidCache *cache = flinfo->fn_extra;
	Oid			oid = DatumGetObjectId(value);
	MigrationState state;

	if (cache == NULL)
		cache = flinfo->fn_extra = MemoryContextAllocZero(flinfo->fn_mcxt,
														  sizeof(StateOidCache));
	for (int i = 0; i < MS_COUNT; i++)
		if (cache->oids[i] == oid)
			return (MigrationState) i;
	state = migration_state_from_datum(value);
	cache->oids[state] = oid;
	return state;
}

SkipReason
skip_reason_from_datum(Datum value)
{
	SkipReason	reason = SR_NOT_IN_PLAN;

	if (!skip_reason_from_name(enum_label(value), &reason))
		unknown_label("skip reason", value);
	return reason;
}

Datum
migration_state_to_datum(FunctionCallInfo fcinfo, MigrationState state)
{
	Oid			type = get_fn_expr_rettype(fcinfo->flinfo);

	return DirectFunctionCall2(enum_in,
							   CStringGetDatum(migration_state_name(state)),
							   ObjectIdGetDatum(type));
}
