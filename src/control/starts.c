/*
 * starts.c — the table of SPEC §3.4: what each answer to a start changes.
 */
#include "postgres.h"

#include "store/backoff.h"
#include "control/starts.h"

static EventNote
note_for(EventCause cause, const RegistryAnswer *a)
{
	EventNote	note = {.cause = cause, .http_status = (int) a->http_status,
	.detail = a->problem};

	return note;
}

/* Start event, then abort: the step that was being started is recorded. */
static void
start_then_abort(Repository *repo, MigrationEvent start, const EventNote *note, StartResult *r)
{
	TransitionRequest start_request = {.event = start};
	TransitionRequest abort_request = {.event = EV_ABORT};

	repository_apply_or_error(repo, &start_request, note);
	repository_apply_or_error(repo, &abort_request, note);
	r->listed = true;
	if (repo->row.state == MS_IMPORT_SKIPPED)
	{
		r->list = SL_SKIPPED;
		r->reason = skip_reason_name(repo->row.skipped_reason);
	}
	else
		r->list = SL_ABORTED;
}

static void
finish_as(Repository *repo, SkipReason reason, const EventNote *note, StartResult *r)
{
	TransitionRequest request = {.event = EV_FINISH_IMPORT, .has_reason = true,
	.reason = reason};

	repository_apply_or_error(repo, &request, note);
	r->listed = true;
	r->list = SL_FINISHED;
	r->reason = skip_reason_name(reason);
}

static void
apply_simple(Repository *repo, MigrationEvent event, const EventNote *note,
			 SummaryList list, StartResult *r)
{
	TransitionRequest request = {.event = event};

	repository_apply_or_error(repo, &request, note);
	r->listed = true;
	r->list = list;
}

/* 429: back-pressure; the (start_max_retries + 1)-th in a row aborts. */
static void
too_many_imports(Repository *repo, MigrationEvent start, const RegistryAnswer *a,
				 const MigrationSettings *settings, const EventNote *note, StartResult *r)
{
	/* Saturates: a count written directly at the top of its type stays there. */
	int32		count = repo->consecutive_429s < PG_INT32_MAX ? repo->consecutive_429s + 1
		: PG_INT32_MAX;

	if (a->has_retry_after)
	{
		r->has_retry_after = true;
		r->retry_after_until = backoff_record(a->retry_after_s);
	}
	if (count > settings->start_max_retries)
	{
		EventNote limit_note = *note;

		limit_note.detail = psprintf("%d consecutive answers \"too many imports\"", count);
		repository_set_consecutive_429s(repo, 0);
		start_then_abort(repo, start, &limit_note, r);
		return;
	}
	repository_set_consecutive_429s(repo, count);
}

StartResult
start_step(Repository *repo, bool final, const MigrationSettings *settings,
		   EventCause cause, SummaryList started_list)
{
	RegistryCall call = final ? CALL_START_IMPORT : CALL_START_PRE_IMPORT;
	MigrationEvent start = final ? EV_START_IMPORT : EV_START_PRE_IMPORT;
	RegistryAnswer a = registry_call(call, repo->path);
	EventNote	note = note_for(cause, &a);
	StartResult r = {.answer = a.answer, .problem = a.problem};

	/* Any real answer but a 429 ends a run of 429s. */
	if (a.answer != ANSWER_TOO_MANY_IMPORTS && a.answer != ANSWER_UNAVAILABLE)
		repository_set_consecutive_429s(repo, 0);

	switch (a.answer)
	{
		case ANSWER_ACCEPTED:
			apply_simple(repo, start, &note, started_list, &r);
			break;
		case ANSWER_ALREADY_IMPORTED:
			finish_as(repo, SR_NATIVE_IMPORT, &note, &r);
			break;
		case ANSWER_NOT_FOUND:
			finish_as(repo, SR_NOT_FOUND, &note, &r);
			break;
		case ANSWER_ALREADY_RUNNING:
			/* The registry is already doing it: recorded, no retry spent. */
			apply_simple(repo, a.http_status == 425 ? EV_MARK_PRE_IMPORTING : EV_MARK_IMPORTING,
						 &note, started_list, &r);
			break;
		case ANSWER_TOO_MANY_IMPORTS:
			too_many_imports(repo, start, &a, settings, &note, &r);
			break;
		case ANSWER_UNAVAILABLE:
			break;				/* nothing changes, no retry spent */
		case ANSWER_OK:
		case ANSWER_REFUSED:
			start_then_abort(repo, start, &note, &r);
			break;
	}
	return r;
}
