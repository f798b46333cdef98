/*
 * decision.c — the retry decision table and the registry's statuses.
 *
 * The rows are evaluated in a fixed order, the first that matches wins;
 * each branch below names its row (rows 1 to 14, as test_decision.c
 * transcribes them). Canceled steps are retried exactly like failed ones:
 * only the retry limit ends the retries.
 */
#include "core/decision.h"

#include <string.h>

/* The statuses the registry reports, by value; RS_UNKNOWN has no name. */
static const char *const status_names[RS_COUNT] = {
	[RS_NATIVE] = "native",
	[RS_PRE_IMPORT_IN_PROGRESS] = "pre_import_in_progress",
	[RS_PRE_IMPORT_COMPLETE] = "pre_import_complete",
	[RS_PRE_IMPORT_FAILED] = "pre_import_failed",
	[RS_PRE_IMPORT_CANCELED] = "pre_import_canceled",
	[RS_IMPORT_IN_PROGRESS] = "import_in_progress",
	[RS_IMPORT_COMPLETE] = "import_complete",
	[RS_IMPORT_FAILED] = "import_failed",
	[RS_IMPORT_CANCELED] = "import_canceled",
};

static const char *const decision_names[RD_COUNT] = {
	[RD_NONE] = "none",
	[RD_UNKNOWN] = "unknown",
	[RD_ABORT] = "abort",
	[RD_SKIP] = "skip",
	[RD_FINISH_IMPORT] = "finish_import",
	[RD_FINISH_IMPORT_NATIVE] = "finish_import_native",
	[RD_MARK_PRE_IMPORTING] = "mark_pre_importing",
	[RD_MARK_IMPORTING] = "mark_importing",
	[RD_START_IMPORT] = "start_import",
	[RD_RETRY_PRE_IMPORT] = "retry_pre_import",
	[RD_RETRY_IMPORT] = "retry_import",
};

RegistryStatus
registry_status_parse_n(const char *status, size_t len)
{
	for (int i = 0; i < RS_COUNT; i++)
	{
		const char *name = status_names[i];

		if (name != NULL && strlen(name) == len && memcmp(name, status, len) == 0)
			return (RegistryStatus) i;
	}
	return RS_UNKNOWN;
}

RegistryStatus
registry_status_parse(const char *status)
{
	return status ? registry_status_parse_n(status, strlen(status)) : RS_UNKNOWN;
}

const char *
registry_status_name(RegistryStatus status)
{
	return (unsigned) status < RS_COUNT && status_names[status] ? status_names[status] : "?";
}

bool
registry_status_ends_step(RegistryStatus status)
{
	switch (status)
	{
		case RS_PRE_IMPORT_COMPLETE:
		case RS_PRE_IMPORT_FAILED:
		case RS_PRE_IMPORT_CANCELED:
		case RS_IMPORT_COMPLETE:
		case RS_IMPORT_FAILED:
		case RS_IMPORT_CANCELED:
			return true;
		default:
			return false;
	}
}

bool
registry_status_is_cancel(RegistryStatus status)
{
	return status == RS_PRE_IMPORT_CANCELED || status == RS_IMPORT_CANCELED;
}

const char *
retry_decision_name(RetryDecision decision)
{
	return (unsigned) decision < RD_COUNT ? decision_names[decision] : "?";
}

static bool
is_pre_import_end(RegistryStatus status)
{
	return status == RS_PRE_IMPORT_FAILED || status == RS_PRE_IMPORT_CANCELED;
}

/* Rows 11 to 14: the registry reports a failed or canceled step. */
static RetryDecision
decide_failed_step(MigrationState state, RegistryStatus status,
				   int32_t retries_count, int32_t max_retries)
{
	bool		retries_left = retries_count < max_retries;

	if (state == MS_IMPORT_ABORTED)
	{
		if (!retries_left)
			return RD_SKIP;		/* rows 11 and 12 at the limit */
		return is_pre_import_end(status) ? RD_RETRY_PRE_IMPORT	/* row 11 */
			: RD_RETRY_IMPORT;	/* row 12 */
	}
	if (migration_state_in_process(state))
		return RD_ABORT;		/* row 13 */
	return RD_NONE;				/* row 14: default */
}

RetryDecision
decide_retry(MigrationState state, RegistryStatus status,
			 int32_t retries_count, int32_t max_retries)
{
	if (migration_state_is_final(state))
		return RD_NONE;			/* row 1 */

	switch (status)
	{
		case RS_UNKNOWN:
			return RD_UNKNOWN;	/* row 2 */
		case RS_NATIVE:
			return RD_FINISH_IMPORT_NATIVE; /* row 3 */
		case RS_PRE_IMPORT_IN_PROGRESS:
			return state == MS_PRE_IMPORTING ? RD_NONE	/* row 4 */
				: RD_MARK_PRE_IMPORTING;	/* row 5 */
		case RS_IMPORT_IN_PROGRESS:
			return state == MS_IMPORTING ? RD_NONE	/* row 6 */
				: RD_MARK_IMPORTING;	/* row 7 */
		case RS_IMPORT_COMPLETE:
			return RD_FINISH_IMPORT;	/* row 8 */
		case RS_PRE_IMPORT_COMPLETE:
			if (state == MS_PRE_IMPORTING || state == MS_PRE_IMPORT_DONE ||
				state == MS_IMPORT_ABORTED)
				return RD_START_IMPORT; /* row 9 */
			return RD_NONE;		/* row 10: default, importing */
		case RS_PRE_IMPORT_FAILED:
		case RS_PRE_IMPORT_CANCELED:
		case RS_IMPORT_FAILED:
		case RS_IMPORT_CANCELED:
			return decide_failed_step(state, status, retries_count, max_retries);
	}
	return RD_UNKNOWN;
}
