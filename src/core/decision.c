/*
 * decision.c — the retry decision table of SPEC §4.
 *
 * The rows are evaluated in the order of the specification; each branch
 * below names the row it implements. Canceled steps are retried exactly
 * like failed ones: only the retry limit ends the retries.
 */
#include "core/decision.h"

#include <string.h>

static const struct
{
	const char *name;
	RegistryStatus status;
}			known_statuses[] = {
	{"native", RS_NATIVE},
	{"pre_import_in_progress", RS_PRE_IMPORT_IN_PROGRESS},
	{"pre_import_complete", RS_PRE_IMPORT_COMPLETE},
	{"pre_import_failed", RS_PRE_IMPORT_FAILED},
	{"pre_import_canceled", RS_PRE_IMPORT_CANCELED},
	{"import_in_progress", RS_IMPORT_IN_PROGRESS},
	{"import_complete", RS_IMPORT_COMPLETE},
	{"import_failed", RS_IMPORT_FAILED},
	{"import_canceled", RS_IMPORT_CANCELED},
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
	for (size_t i = 0; i < sizeof(known_statuses) / sizeof(known_statuses[0]); i++)
	{
		const char *name = known_statuses[i].name;

		if (strlen(name) == len && memcmp(name, status, len) == 0)
			return known_statuses[i].status;
	}
	return RS_UNKNOWN;
}

RegistryStatus
registry_status_parse(const char *status)
{
	return status ? registry_status_parse_n(status, strlen(status)) : RS_UNKNOWN;
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
