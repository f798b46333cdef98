/*
 * starts.c — what each answer to a start changes:
 *
 *   accepted (202)            the step starts (listed under started_list)
 *   already imported (200)    finished as native_import (or, after a
 *                             start whose answer was lost, as our own)
 *   not found (404)           finished as not_found
 *   already running (425/409) marked as running, no retry spent
 *   too many imports (429)    nothing yet; the (start_max_retries + 1)-th
 *                             in a row aborts; a Retry-After is recorded
 *   not ready (429 with the   the same, but it concerns this repository
 *   registry's cool-down      alone: its Retry-After is not recorded, and
 *   code)                     the enqueuer goes on with the others
 *   no usable answer          nothing, no retry spent; a start the
 *                             registry may have carried out is recorded
 *   anything else             the start is recorded, then aborted
 */
#include "postgres.h"

#include "control/changes.h"
#include "control/lost_starts.h"
#include "control/starts.h"
#include "store/backoff.h"

typedef struct Start
{
	Repository *repo;
	MigrationEvent event;		/* start_pre_import or start_import */
	const MigrationSettings *settings;
	CycleSummary *summary;
} Start;

/* Start event, then abort: the step that was being started is recorded. */
static void
start_then_abort(const Start *st, const EventNote *note)
{
	TransitionRequest start_request = {.event = st->event};

	repository_apply_or_error(st->repo, &start_request, note, st->settings);
	abort_listed(st->repo, false, note, st->settings, st->summary);
}

static void
finish_as(const Start *st, SkipReason reason, const EventNote *note)
{
	TransitionRequest request = {.event = EV_FINISH_IMPORT, .has_reason = true,
	.reason = reason};

	change_listed(st->repo, &request, note, st->settings, st->summary, SL_FINISHED);
}

/*
 * 200: the repository is already on the new registry. After one of our
 * starts lost its answer, that is our own import finishing.
 */
static void
finish_already_imported(const Start *st, const EventNote *note)
{
	bool		ours = lost_start_pending(st->repo);
	TransitionRequest request = {.event = EV_FINISH_IMPORT, .has_reason = !ours,
	.reason = SR_NATIVE_IMPORT};
	EventNote	ours_note = *note;

	if (ours)
		ours_note.detail = "already imported: by the start whose answer was lost";
	change_listed(st->repo, &request, &ours_note, st->settings, st->summary, SL_FINISHED);
}

static void
apply_simple(const Start *st, MigrationEvent event, const EventNote *note, SummaryList list)
{
	TransitionRequest request = {.event = event};

	change_listed(st->repo, &request, note, st->settings, st->summary, list);
}

/*
 * 429: nothing changes but the count of 429s in a row; the
 * (start_max_retries + 1)-th aborts. Returns whether it aborted.
 */
static bool
too_many_imports(const Start *st, const RegistryAnswer *a, const EventNote *note)
{
	Repository *repo = st->repo;

	/* Saturates: a count written directly at the top of its type stays there. */
	int32		count = repo->consecutive_429s < PG_INT32_MAX ? repo->consecutive_429s + 1
		: PG_INT32_MAX;

	if (a->has_retry_after)
		(void) backoff_record(a->retry_after_s);
	if (count > st->settings->start_max_retries)
	{
		EventNote	limit_note = *note;

		limit_note.detail = a->answer == ANSWER_NOT_READY
			? psprintf("%d consecutive answers \"too many imports\", the last one "
					   "\"repository not ready\"", count)
			: psprintf("%d consecutive answers \"too many imports\"", count);
		repository_set_consecutive_429s(repo, 0);
		start_then_abort(st, &limit_note);
		return true;
	}
	repository_set_consecutive_429s(repo, count);
	return false;
}

HandleOutcome
unavailable_outcome(const RegistryAnswer *answer)
{
	return answer->registry_down ? HANDLED_REGISTRY_DOWN : HANDLED_FAILED_ANSWER;
}

HandleOutcome
start_step(Repository *repo, bool final, const MigrationSettings *settings,
		   EventCause cause, CycleSummary *summary, SummaryList started_list)
{
	Start		st = {.repo = repo, .event = final ? EV_START_IMPORT : EV_START_PRE_IMPORT,
	.settings = settings, .summary = summary};
	RegistryAnswer a = registry_call(final ? CALL_START_IMPORT : CALL_START_PRE_IMPORT,
									 repo->path);
	EventNote	note = {.cause = cause, .http_status = (int) a.http_status,
	.detail = a.problem};

	/*
	 * Nothing was locked while the registry was asked. Each change below
	 * writes the row only if nobody changed it meanwhile (a notification
	 * wins); otherwise it locks the row and checks what changed.
	 *
	 * Any usable answer but a 429 ends a run of 429s; a failed answer does
	 * not.
	 */
	if (a.answer != ANSWER_TOO_MANY_IMPORTS && a.answer != ANSWER_NOT_READY &&
		a.answer != ANSWER_UNAVAILABLE && repo->consecutive_429s != 0)
		repository_set_consecutive_429s(repo, 0);

	switch (a.answer)
	{
		case ANSWER_ACCEPTED:
			apply_simple(&st, st.event, &note, started_list);
			break;
		case ANSWER_ALREADY_IMPORTED:
			finish_already_imported(&st, &note);
			break;
		case ANSWER_NOT_FOUND:
			finish_as(&st, SR_NOT_FOUND, &note);
			break;
		case ANSWER_ALREADY_RUNNING:
			/* The registry is already doing it: recorded, no retry spent. */
			apply_simple(&st, a.http_status == 425 ? EV_MARK_PRE_IMPORTING : EV_MARK_IMPORTING,
						 &note, started_list);
			break;
		case ANSWER_TOO_MANY_IMPORTS:
			too_many_imports(&st, &a, &note);
			return HANDLED_TOO_MANY_IMPORTS;
		case ANSWER_NOT_READY:
			/* Aborted at the limit, it is handled; else passed over this cycle. */
			return too_many_imports(&st, &a, &note) ? HANDLED : HANDLED_NOT_READY;
		case ANSWER_UNAVAILABLE:
			/* Nothing changes, no retry spent; a start that may have got through is recorded. */
			lost_start_record(repo, final, &a, cause);
			return unavailable_outcome(&a);
		case ANSWER_OK:
		case ANSWER_REFUSED:
			start_then_abort(&st, &note);
			break;
	}
	return HANDLED;
}
