/*
 * states.h — the migration states and skip reasons, defined once.
 *
 * Pure C (no server headers): used by the extension and by the unit tests.
 * The order of both lists is the order of the SQL enum types
 * registry_migration.migration_state and registry_migration.skip_reason;
 * the regression test "states" checks that SQL and C agree.
 */
#ifndef RM_STATES_H
#define RM_STATES_H

#include <stdbool.h>

typedef enum MigrationState
{
	MS_DEFAULT,
	MS_PRE_IMPORTING,
	MS_PRE_IMPORT_DONE,
	MS_IMPORTING,
	MS_IMPORT_DONE,
	MS_IMPORT_ABORTED,
	MS_IMPORT_SKIPPED
} MigrationState;

#define MS_COUNT (MS_IMPORT_SKIPPED + 1)

typedef enum SkipReason
{
	SR_NOT_IN_PLAN,
	SR_TOO_MANY_RETRIES,
	SR_TOO_MANY_TAGS,
	SR_ROOT_NAMESPACE_IN_DENY_LIST,
	SR_MIGRATION_CANCELED,
	SR_NOT_FOUND,
	SR_NATIVE_IMPORT,
	SR_MIGRATION_FORCED_CANCELED,
	SR_MIGRATION_CANCELED_BY_REGISTRY
} SkipReason;

#define SR_COUNT (SR_MIGRATION_CANCELED_BY_REGISTRY + 1)

extern const char *migration_state_name(MigrationState state);
extern const char *skip_reason_name(SkipReason reason);

/* Look a label up; false when the label is not one of ours. */
extern bool migration_state_from_name(const char *name, MigrationState *state);
extern bool skip_reason_from_name(const char *name, SkipReason *reason);

/* import_done and import_skipped: only the admin reset leaves them. */
extern bool migration_state_is_final(MigrationState state);

/* pre_importing, pre_import_done, importing: the repository holds a slot. */
extern bool migration_state_in_process(MigrationState state);

#endif
