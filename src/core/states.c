/*
 * states.c — names of the migration states, skip reasons and event causes.
 */
#include "core/states.h"

#include <string.h>

static const char *const state_names[MS_COUNT] = {
	[MS_DEFAULT] = "default",
	[MS_PRE_IMPORTING] = "pre_importing",
	[MS_PRE_IMPORT_DONE] = "pre_import_done",
	[MS_IMPORTING] = "importing",
	[MS_IMPORT_DONE] = "import_done",
	[MS_IMPORT_ABORTED] = "import_aborted",
	[MS_IMPORT_SKIPPED] = "import_skipped",
};

static const char *const reason_names[SR_COUNT] = {
	[SR_NOT_IN_PLAN] = "not_in_plan",
	[SR_TOO_MANY_RETRIES] = "too_many_retries",
	[SR_TOO_MANY_TAGS] = "too_many_tags",
	[SR_ROOT_NAMESPACE_IN_DENY_LIST] = "root_namespace_in_deny_list",
	[SR_MIGRATION_CANCELED] = "migration_canceled",
	[SR_NOT_FOUND] = "not_found",
	[SR_NATIVE_IMPORT] = "native_import",
	[SR_MIGRATION_FORCED_CANCELED] = "migration_forced_canceled",
	[SR_MIGRATION_CANCELED_BY_REGISTRY] = "migration_canceled_by_registry",
};

static const char *const cause_names[CAUSE_COUNT] = {
	[CAUSE_GUARD] = "guard",
	[CAUSE_ENQUEUER] = "enqueuer",
	[CAUSE_NOTIFICATION] = "notification",
	[CAUSE_ADMIN] = "admin",
};

const char *
event_cause_name(EventCause cause)
{
	return (unsigned) cause < CAUSE_COUNT ? cause_names[cause] : "?";
}

const char *
migration_state_name(MigrationState state)
{
	return (unsigned) state < MS_COUNT ? state_names[state] : "?";
}

const char *
skip_reason_name(SkipReason reason)
{
	return (unsigned) reason < SR_COUNT ? reason_names[reason] : "?";
}

static int
find_name(const char *const *names, int count, const char *name)
{
	for (int i = 0; i < count; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

bool
migration_state_from_name(const char *name, MigrationState *state)
{
	int			i = find_name(state_names, MS_COUNT, name);

	if (i < 0)
		return false;
	*state = (MigrationState) i;
	return true;
}

bool
skip_reason_from_name(const char *name, SkipReason *reason)
{
	int			i = find_name(reason_names, SR_COUNT, name);

	if (i < 0)
		return false;
	*reason = (SkipReason) i;
	return true;
}

bool
migration_state_is_final(MigrationState state)
{
	return state == MS_IMPORT_DONE || state == MS_IMPORT_SKIPPED;
}

bool
migration_state_in_process(MigrationState state)
{
	return state == MS_PRE_IMPORTING || state == MS_PRE_IMPORT_DONE ||
		state == MS_IMPORTING;
}
