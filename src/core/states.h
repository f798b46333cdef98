/*
 * states.h — the labels SQL and C share, defined once on the C side: the
 * migration states, the skip reasons and the causes of the event log.
 *
 * Pure C (no server headers): used by the extension and by the unit tests.
 * The order of the first two lists is the order of the SQL enum types
 * registry_migration.migration_state and registry_migration.skip_reason;
 * the causes are the CHECK list of registry_migration.events.cause. The
 * unit test "sql_facts" reads the install script and compares every list
 * here with it; the regression test "states" checks the installed types.
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

/* Who caused a change, as the event log records it. */
typedef enum EventCause
{
	CAUSE_GUARD,
	CAUSE_ENQUEUER,
	CAUSE_NOTIFICATION,
	CAUSE_ADMIN
} EventCause;

#define CAUSE_COUNT (CAUSE_ADMIN + 1)

extern const char *migration_state_name(MigrationState state);
extern const char *event_cause_name(EventCause cause);
extern const char *skip_reason_name(SkipReason reason);

/* Look a label up; false when the label is not one of ours. */
extern bool migration_state_from_name(const char *name, MigrationState *state);
extern bool skip_reason_from_name(const char *name, SkipReason *reason);

/* import_done and import_skipped: only the admin reset leaves them. */
extern bool migration_state_is_final(MigrationState state);

/*
 * pre_importing, pre_import_done, importing: the repository holds one of
 * the capacity's slots (the enqueuer counts them, the progress view shows
 * them as in_process).
 */
extern bool migration_state_in_process(MigrationState state);

#endif
