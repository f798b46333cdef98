/*
 * changes.c — reading, changing and listing one repository in a cycle.
 */
#include "postgres.h"

#include "control/changes.h"

bool
read_unchanged(int64 id, const char *path, MigrationState expected,
			   const TimestampTz *step_started, Repository *repo, CycleSummary *summary)
{
	if (repository_read_by_id(id, repo) && repo->row.state == expected &&
		(step_started == NULL || current_step_start(repo) == *step_started))
		return true;
	summary_state_changed(summary, path);
	return false;
}

TimestampTz
current_step_start(const Repository *repo)
{
	const OptionalTime *t = repo->row.state == MS_PRE_IMPORTING ? &repo->row.pre_import_started_at
		: &repo->row.import_started_at;

	return t->set ? t->at : 0;
}

void
change_listed(Repository *repo, const TransitionRequest *request, const EventNote *note,
			  const MigrationSettings *settings, CycleSummary *summary, SummaryList list)
{
	repository_apply_or_error(repo, request, note, settings);
	summary_add(summary, list, repo->path,
				request->has_reason ? skip_reason_name(request->reason) : NULL);
}

void
list_after_abort(const Repository *repo, CycleSummary *summary)
{
	if (repo->row.state == MS_IMPORT_SKIPPED)
		summary_add(summary, SL_SKIPPED, repo->path, skip_reason_name(repo->row.skipped_reason));
	else
		summary_add(summary, SL_ABORTED, repo->path, NULL);
}

void
abort_listed(Repository *repo, bool canceled_by_registry, const EventNote *note,
			 const MigrationSettings *settings, CycleSummary *summary)
{
	TransitionRequest request = {.event = EV_ABORT, .canceled_by_registry = canceled_by_registry};

	repository_apply_or_error(repo, &request, note, settings);
	list_after_abort(repo, summary);
}

void
abort_after_error(int64 id, const char *error, EventCause cause, bool count_failed_retry,
				  const MigrationSettings *settings, CycleSummary *summary)
{
	EventNote	note = {.cause = cause, .detail = error};
	TransitionRequest request = {.event = EV_ABORT};
	Repository	repo;

	if (!repository_lock_by_id(id, &repo))
		return;
	if (count_failed_retry && repo.row.state == MS_IMPORT_ABORTED)
		request.event = EV_RETRY_FAILED;
	if (!repository_apply(&repo, &request, &note, settings).allowed)
		return;
	list_after_abort(&repo, summary);
}
