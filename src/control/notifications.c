/*
 * notifications.c — handling the end of a step the registry reports.
 *
 *   state              *_complete                     *_failed, *_canceled
 *   default            refused                        refused
 *   import_skipped     refused                        no change
 *   in process         finish the step it reports     abort
 *   import_aborted     finish the step it reports     no change
 *   import_done        no change                      no change
 *
 * A pre_import_complete only finishes a pre-import that is running or was
 * aborted; elsewhere (pre_import_done, importing) it is late.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/timestamp.h"

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
	NOTIFY_ABORT
} NotificationAction;

static NotificationAction
notification_action(RegistryStatus status, MigrationState state)
{
	if (state == MS_DEFAULT)
		return NOTIFY_REFUSE;
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
	switch (notification_action(status, repo.row.state))
	{
		case NOTIFY_REFUSE:
			refuse(&repo, status_text);
			break;
		case NOTIFY_NO_CHANGE:
			note.detail = "no change: duplicate, late or already handled";
			event_log_write(repo.id, repo.path, repo.row.state, repo.row.state,
							"notification", &note, GetCurrentTimestamp());
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
