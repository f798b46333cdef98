/*
 * notifications.c — handle_notification(path, status) (SPEC §7): what the
 * application calls when the registry reports the end of a step. It never
 * calls the registry; repeated and late notifications change nothing and
 * are recorded in the event log.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "store/enum_datums.h"
#include "sql/path_args.h"
#include "store/state_machine.h"
#include "store/commit_signal.h"

PG_FUNCTION_INFO_V1(rm_handle_notification);

typedef enum NotificationAction
{
	NOTIFY_REFUSE,				/* 55000 */
	NOTIFY_NO_CHANGE,			/* duplicate, late or already handled */
	NOTIFY_FINISH_PRE_IMPORT,
	NOTIFY_FINISH_IMPORT,
	NOTIFY_ABORT
} NotificationAction;

static const char *const valid_statuses[] = {
	"pre_import_complete", "pre_import_failed", "pre_import_canceled",
	"import_complete", "import_failed", "import_canceled",
};

static bool
is_valid_status(const char *status)
{
	for (int i = 0; i < lengthof(valid_statuses); i++)
		if (strcmp(valid_statuses[i], status) == 0)
			return true;
	return false;
}

static bool
ends_with(const char *s, const char *suffix)
{
	size_t		n = strlen(s);
	size_t		m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The outcome table of SPEC §7. */
static NotificationAction
notification_action(const char *status, MigrationState state)
{
	if (state == MS_DEFAULT)
		return NOTIFY_REFUSE;
	if (strcmp(status, "pre_import_complete") == 0)
	{
		if (state == MS_PRE_IMPORTING || state == MS_IMPORT_ABORTED)
			return NOTIFY_FINISH_PRE_IMPORT;
		return state == MS_IMPORT_SKIPPED ? NOTIFY_REFUSE : NOTIFY_NO_CHANGE;
	}
	if (strcmp(status, "import_complete") == 0)
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

Datum
rm_handle_notification(PG_FUNCTION_ARGS)
{
	char	   *path;
	char	   *status;
	Repository	repo;
	EventNote	note = {.cause = CAUSE_NOTIFICATION};
	TransitionRequest request = {0};
	MigrationState after;

	require_argument(fcinfo, 0, "path");
	require_argument(fcinfo, 1, "status");
	path = path_argument(fcinfo, 0);
	status = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!is_valid_status(status))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid notification status \"%s\"", status),
				 errhint("Valid statuses: pre_import_complete, pre_import_failed, pre_import_canceled, "
						 "import_complete, import_failed, import_canceled.")));
	note.registry_status = status;

	SPI_connect();
	if (!repository_lock_by_path(path, &repo))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("repository \"%s\" does not exist", path)));
	switch (notification_action(status, repo.row.state))
	{
		case NOTIFY_REFUSE:
			refuse(&repo, status);
			break;
		case NOTIFY_NO_CHANGE:
			note.detail = "no change: duplicate, late or already handled";
			event_log_write(repo.id, repo.path, repo.row.state, repo.row.state,
							"notification", &note, GetCurrentTimestamp());
			break;
		case NOTIFY_FINISH_PRE_IMPORT:
			request.event = EV_FINISH_PRE_IMPORT;
			repository_apply_or_error(&repo, &request, &note);
			break;
		case NOTIFY_FINISH_IMPORT:
			request.event = EV_FINISH_IMPORT;
			repository_apply_or_error(&repo, &request, &note);
			break;
		case NOTIFY_ABORT:
			request.event = EV_ABORT;
			request.canceled_by_registry = ends_with(status, "_canceled");
			repository_apply_or_error(&repo, &request, &note);
			break;
	}
	after = repo.row.state;
	SPI_finish();
	commit_signal_raise();
	PG_RETURN_DATUM(migration_state_to_datum(fcinfo, after));
}
