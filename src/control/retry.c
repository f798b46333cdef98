/*
 * retry.c — retrying an aborted repository.
 */
#include "postgres.h"

#include "control/reconcile.h"
#include "control/retry.h"

/* A retry lists everything it starts or finds running under "retried". */
static const ReconcileLists retry_lists = {
	.marked = SL_RETRIED,
	.list_pre_import_finish = false,
};

HandleOutcome
retry_aborted(Repository *repo, const RegistryAnswer *status, const MigrationSettings *s,
			  EventCause cause, CycleSummary *summary)
{
	EventNote	note = {.cause = cause, .http_status = (int) status->http_status,
	.registry_status = status->registry_status};
	RetryDecision decision;
	bool		final;

	switch (reconcile(repo, status->registry_status, &note, s, summary, &retry_lists, &decision))
	{
		case RECONCILED:
			return HANDLED;
		case RECONCILED_START_IMPORT:
			return HANDLED_FINAL_IMPORT_DUE;
		case NOT_RECONCILED:
			break;
	}
	if (decision == RD_RETRY_PRE_IMPORT || decision == RD_RETRY_IMPORT)
		final = decision == RD_RETRY_IMPORT;
	else
	{
		/* An unknown status: retry the step it was at, or skip at the limit. */
		if (repo->row.retries_count >= s->max_retries)
		{
			skip_too_many_retries(repo, &note, s, summary);
			return HANDLED;
		}
		final = repo->row.pre_import_done_at.set;
	}
	return start_step(repo, final, s, cause, summary, SL_RETRIED);
}
