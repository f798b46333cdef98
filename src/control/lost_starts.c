/*
 * lost_starts.c — recording starts whose answer was lost, and reading the
 * registry's later word on them.
 */
#include "postgres.h"

#include "control/lost_starts.h"

void
lost_start_record(const Repository *repo, bool final, const RegistryAnswer *answer,
				  EventCause cause)
{
	EventNote	note = {.cause = cause, .http_status = (int) answer->http_status};

	if (answer->answer != ANSWER_UNAVAILABLE ||
		!start_answer_lost(answer->registry_down, answer->http_status))
		return;
	note.detail = psprintf("the %s start got no usable answer (%s): the registry may have started it",
						   final ? "final import" : "pre-import",
						   answer->problem ? answer->problem : "no answer");
	event_log_no_change(repo->id, repo->path, repo->row.state, LOST_START_EVENT, &note);
}

bool
lost_start_pending(const Repository *repo)
{
	return event_log_since_last_change(repo->id, repo->row.state, LOST_START_EVENT);
}

bool
lost_start_completion(Repository *repo, RegistryStatus status, const EventNote *note,
					  const MigrationSettings *settings)
{
	TransitionRequest start = {.event = EV_START_PRE_IMPORT};
	TransitionRequest finish = {.event = status == RS_PRE_IMPORT_COMPLETE ? EV_FINISH_PRE_IMPORT
	: EV_FINISH_IMPORT};
	EventNote	start_note = *note;

	Assert(repo->row.state == MS_DEFAULT);
	if (status != RS_PRE_IMPORT_COMPLETE && status != RS_IMPORT_COMPLETE)
		return false;
	/* A finished pre-import needs its start on record (finish import does not). */
	if (status == RS_PRE_IMPORT_COMPLETE)
	{
		start_note.detail = "the pre-import whose start got no usable answer was accepted";
		repository_apply_or_error(repo, &start, &start_note, settings);
	}
	repository_apply_or_error(repo, &finish, note, settings);
	return true;
}
