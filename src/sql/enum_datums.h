/*
 * enum_datums.h — conversions between the SQL enum types and the C enums of
 * states.h, by label, so SQL and C agree by name rather than by position.
 */
#ifndef RM_ENUM_DATUMS_H
#define RM_ENUM_DATUMS_H

#include "postgres.h"

#include "fmgr.h"

#include "core/states.h"

extern MigrationState migration_state_from_datum(Datum value);
extern SkipReason skip_reason_from_datum(Datum value);

/*
 * The same, remembering each label's Oid in flinfo->fn_extra, for functions
 * called once per row.
 */
extern MigrationState migration_state_from_datum_cached(FmgrInfo *flinfo, Datum value);

/* A migration_state value of the SQL type the function returns. */
extern Datum migration_state_to_datum(FunctionCallInfo fcinfo, MigrationState state);

#endif
