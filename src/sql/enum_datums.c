/*
 * enum_datums.c — SQL enum values to C enums and back.
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

#include "sql/enum_datums.h"

MigrationState
migration_state_from_datum(Datum value)
{
	char	   *label = DatumGetCString(DirectFunctionCall1(enum_out, value));
	MigrationState state;

	if (!migration_state_from_name(label, &state))
		elog(ERROR, "migration state \"%s\" is unknown to the extension's library", label);
	pfree(label);
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
	char	   *label = DatumGetCString(DirectFunctionCall1(enum_out, value));
	SkipReason	reason;

	if (!skip_reason_from_name(label, &reason))
		elog(ERROR, "skip reason \"%s\" is unknown to the extension's library", label);
	pfree(label);
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
