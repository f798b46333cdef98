/*
 * reconcile.c — the retry decision turned into an event and a summary list.
 */
#include "postgres.h"

#include "control/changes.h"
#include "control/reconcile.h"

void
skip_too_many_retries(Repository *repo, const EventNote *note,
					  const MigrationSettings *settings, CycleSummary *summary)
{
	TransitionRequest skip = {.event = EV_SKIP, .has_reason = true,
	.reason = SR_TOO_MANY_RETRIES};

	change_listed(repo, &skip, note, settings, summary, SL_SKIPPED);
}

/* The pre-import finished after all: recorded before the final import. */
static void
finish_pre_import(Repository *repo, const EventNote *note, const MigrationSettings *settings,
				  CycleSummary *summary, const ReconcileLists *lists)
{
	TransitionRequest finish = {.event = EV_FINISH_PRE_IMPORT};

	if (lists->list_pre_import_finish)
		change_listed(repo, &finish, note, settings, summary, SL_FINISHED);
	else
		repository_apply_or_error(repo, &finish, note, settings);
}

Reconciled
reconcile(Repository *repo, const char *registry_status, const EventNote *note,
		  const MigrationSettings *settings, CycleSummary *summary,
		  const ReconcileLists *lists, RetryDecision *decision)
{
	RegistryStatus status = registry_status_parse(registry_status);
	TransitionRequest request = {0};

	*decision = decide_retry(repo->row.state, status, repo->row.retries_count,
							 settings->max_retries);
	switch (*decision)
	{
		case RD_FINISH_IMPORT:
		case RD_FINISH_IMPORT_NATIVE:
			request = (TransitionRequest) {.event = EV_FINISH_IMPORT,
				.has_reason = *decision == RD_FINISH_IMPORT_NATIVE,
			.reason = SR_NATIVE_IMPORT};
			change_listed(repo, &request, note, settings, summary, SL_FINISHED);
			return RECONCILED;
		case RD_MARK_PRE_IMPORTING:
		case RD_MARK_IMPORTING:
			request.event = *decision == RD_MARK_IMPORTING ? EV_MARK_IMPORTING
				: EV_MARK_PRE_IMPORTING;
			change_listed(repo, &request, note, settings, summary, lists->marked);
			return RECONCILED;
		case RD_SKIP:
			skip_too_many_retries(repo, note, settings, summary);
			return RECONCILED;
		case RD_ABORT:
			abort_listed(repo, registry_status_is_cancel(status), note, settings, summary);
			return RECONCILED;
		case RD_START_IMPORT:
			finish_pre_import(repo, note, settings, summary, lists);
			return RECONCILED_START_IMPORT;
		case RD_NONE:
		case RD_UNKNOWN:
		case RD_RETRY_PRE_IMPORT:
		case RD_RETRY_IMPORT:
			break;
	}
	return NOT_RECONCILED;
}
