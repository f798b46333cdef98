/*
 * notifications.c — handling the end of a step the registry reports.
 *
 *   state              *_complete                     *_failed, *_canceled
 *   default            refused (1)                    refused (1)
 *   import_skipped     refused                        no change
 *   in process         finish the step it reports     abort (2)
 *   import_aborted     finish the step it reports     no change
 *   import_done        no change                      no change
 *
 * A pre_import_complete only finishes a pre-import that is running or was
 * aborted; elsewhere (pre_import_done, importing) it is late.
 *
 * (1) Unless one of our starts lost its answer since the repository last
 *     changed (lost_starts.h): then a completion is applied as if the start
 *     had been accepted, and a failure changes nothing.
 * (2) Unless the step is only seconds old: the failure may be about an
 *     earlier attempt, so it is held for the guard to confirm with the
 *     registry (failure_reports.h), and nothing changes yet.
 */
#include "postgres.h"

#include "executor/spi.h"

#include "control/failure_reports.h"
#include "control/lost_starts.h"
#include "control/notifications.h"
#include "store/commit_signal.h"
#include "store/event_log.h"
#include "store/settings.h"
#include "store/state_machine.h"

typedef enum NotificationAction
{
	NOTIFY_REFUSE,				/* 55000 */
	NOTIFY_NO_CHANGE,			/* duplicate, late or already handled */
	NOTIFY_FINISH_PRE_IMPORT,
	NOTIFY_FINISH_IMPORT,
	NOTIFY_ABORT,
	NOTIFY_LOST_START			/* default, after a start whose answer was lost */
} NotificationAction;

static NotificationAction
notification_action(RegistryStatus status, const Repository *repo)
{
	MigrationState state = repo->row.state;

	if (state == MS_DEFAULT)
		return lost_start_pending(repo) ? NOTIFY_LOST_START : NOTIFY_REFUSE;
	if (status == RS_PRE_IMPORT_COMPLETE)
	{
		if (state == MS_PRE_IMPORTING || state == MS_IMPORT_ABORTED)
			return NOTIFY_FINISH_PRE_IMPORT;
		return state == MS_IMPORT_SKIPPED ? NOTIFY_REFUSE : NOTIFY_NO_CHANGE;
	}
	if (status == RS_IMPORT_COMPLETE)
	{
		if (state == MS_IMPORT_DONE)
			return NOTIFY_NO_CHANGE;
		return state == MS_IMPORT_SKIPPED ? NOTIFY_REFUSE : NOTIFY_FINISH_IMPORT;
	}
	/* *_failed and *_canceled */
	return migration_state_in_process(state) ? NOTIFY_ABORT : NOTIFY_NO_CHANGE;
}

static void
refuse(const Repository *repo, const char *status)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("notification %s refused for repository \"%s\" in state %s",
					status, repo->path, migration_state_name(repo->row.state)),
			 errdetail("The registry reports the end of a step this repository is not at.")));
}

static void
record_no_change(const Repository *repo, EventNote *note)
{
	note->detail = "no change: duplicate, late or already handled";
	event_log_no_change(repo->id, repo->path, repo->row.state, "notification", note);
}

/* A default repository one of whose starts lost its answer. */
static void
after_lost_start(Repository *repo, RegistryStatus status, EventNote *note)
{
	MigrationSettings settings = settings_load();

	if (!lost_start_completion(repo, status, note, &settings))
		record_no_change(repo, note);
}

/* Apply the event the notification calls for; it must be allowed. */
static void
apply(Repository *repo, const TransitionRequest *request, const EventNote *note)
{
	MigrationSettings settings = settings_load();

	repository_apply_or_error(repo, request, note, &settings);
}

MigrationState
notification_handle(const char *path, RegistryStatus status, const char *status_text)
{
	Repository	repo;
	EventNote	note = {.cause = CAUSE_NOTIFICATION, .registry_status = status_text};
	TransitionRequest request = {0};
	MigrationState after;

	SPI_connect();
	if (!repository_lock_by_path(path, &repo))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("repository \"%s\" does not exist", path)));
	switch (notification_action(status, &repo))
	{
		case NOTIFY_REFUSE:
			refuse(&repo, status_text);
			break;
		case NOTIFY_NO_CHANGE:
			record_no_change(&repo, &note);
			break;
		case NOTIFY_LOST_START:
			after_lost_start(&repo, status, &note);
			break;
		case NOTIFY_FINISH_PRE_IMPORT:
			request.event = EV_FINISH_PRE_IMPORT;
			apply(&repo, &request, &note);
			break;
		case NOTIFY_FINISH_IMPORT:
			request.event = EV_FINISH_IMPORT;
			apply(&repo, &request, &note);
			break;
		case NOTIFY_ABORT:
			if (failure_report_hold(&repo, status_text))
				break;			/* the guard confirms it with the registry first */
			request.event = EV_ABORT;
			request.canceled_by_registry = registry_status_is_cancel(status);
			apply(&repo, &request, &note);
			break;
	}
	after = repo.row.state;
	SPI_finish();
	commit_signal_raise();
	return after;
}
