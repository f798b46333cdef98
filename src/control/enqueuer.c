/*
 * enqueuer.c — the enqueue cycle.
 *
 * Nothing starts while the migration is disabled or a Retry-After is
 * pending. Otherwise every finished pre-import gets its final import, even
 * at capacity or within enqueue_waiting_time (a final import finishes work
 * already begun); then, while below capacity and not waiting, one
 * repository per round: an aborted one to retry, else a new one.
 *
 * A registry-wide 429 ends the cycle. A repository the registry gives no
 * usable answer about, or answers "not ready" for (its cool-down after a
 * cancel), is passed over, unchanged, and the cycle goes on: one flaky
 * answer must not stop the migration. It stops when the registry is down
 * (no connection at all), or after FAILED_ANSWERS_TO_STOP repositories in
 * a row were passed over for a failed answer, counted across the final
 * imports and the new work.
 *
 * A candidate is read without a lock; its row is locked only when an
 * answer is applied (see starts.h), and each repository is committed before
 * the next one's request when the cycle commits (the worker, CALL).
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/timestamp.h"

#include "control/candidates.h"
#include "control/changes.h"
#include "control/cycle.h"
#include "control/enqueuer.h"
#include "control/retry.h"
#include "control/starts.h"
#include "registry/registry_client.h"
#include "store/backoff.h"
#include "store/state_machine.h"

/* Repositories in a row passed over for a failed answer that stop the cycle. */
#define FAILED_ANSWERS_TO_STOP 3

typedef struct EnqueueContext
{
	const MigrationSettings *settings;
	CycleSummary *summary;
	Candidate	candidate;
	Repository	selected;		/* the candidate's row, as selected */
	bool		fresh;			/* selected is the row to start from */
	int64		id;
	char	   *path;
	HandleOutcome outcome;
	SummaryList final_list;		/* where a final import is listed */
	const char *error;			/* the error that ended the handling, if any */
	int			failed_in_a_row;	/* repositories passed over for a failed answer */
} EnqueueContext;

/*
 * The candidate's row: as selected, unless it is to be read again (after a
 * registry request, or a change in this cycle). A change made between the
 * selection and the start is seen when the answer is applied.
 */
static bool
read_candidate(EnqueueContext *ctx, MigrationState expected, Repository *repo)
{
	if (ctx->fresh)
	{
		*repo = ctx->selected;
		return true;
	}
	return read_unchanged(ctx->id, ctx->path, expected, NULL, repo, ctx->summary);
}

static void
handle_final_import(EnqueueContext *ctx)
{
	Repository	repo;

	if (!read_candidate(ctx, MS_PRE_IMPORT_DONE, &repo))
		return;
	ctx->outcome = start_step(&repo, true, ctx->settings, CAUSE_ENQUEUER, ctx->summary,
							  ctx->final_list);
}

static void
handle_aborted(EnqueueContext *ctx)
{
	RegistryAnswer status = registry_call(CALL_STATUS, ctx->path);
	Repository	repo;

	if (status.answer == ANSWER_UNAVAILABLE)
	{
		ctx->outcome = unavailable_outcome(&status);
		return;
	}
	/* Read again after the status: a repository changed meanwhile gets no start. */
	ctx->fresh = false;
	if (!read_candidate(ctx, MS_IMPORT_ABORTED, &repo))
		return;
	ctx->outcome = retry_aborted(&repo, &status, ctx->settings, CAUSE_ENQUEUER, ctx->summary);
}

/*
 * How many tags a new repository has, as far as max_tags_count needs;
 * false, with the outcome set, when the registry gave no usable answer.
 */
static bool
count_tags(EnqueueContext *ctx, int64 *tags)
{
	const MigrationSettings *s = ctx->settings;
	RegistryAnswer answer;

	*tags = 0;
	if (s->max_tags_count <= 0)
		return true;
	/* No more tags than needed to know the repository has too many. */
	answer = registry_count_tags(ctx->path, (int64) s->max_tags_count + 1);
	if (answer.answer == ANSWER_UNAVAILABLE)
	{
		ctx->outcome = unavailable_outcome(&answer);
		return false;
	}
	if (answer.answer == ANSWER_OK)
		*tags = answer.tags;
	else if (answer.answer != ANSWER_NOT_FOUND)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("unusable answer to the tag list: %s", answer.problem)));
	return true;
}

static void
handle_new(EnqueueContext *ctx)
{
	const MigrationSettings *s = ctx->settings;
	Repository	repo;
	int64		tags;

	if (!count_tags(ctx, &tags))
		return;
	/* Read again after a tag list: a repository changed meanwhile gets no start. */
	if (s->max_tags_count > 0)
		ctx->fresh = false;
	if (!read_candidate(ctx, MS_DEFAULT, &repo))
		return;
	if (tags > s->max_tags_count)
	{
		EventNote	note = {.cause = CAUSE_ENQUEUER,
		.detail = psprintf("more than %d tags", s->max_tags_count)};
		TransitionRequest skip = {.event = EV_SKIP, .has_reason = true, .reason = SR_TOO_MANY_TAGS};

		change_listed(&repo, &skip, &note, s, ctx->summary, SL_SKIPPED);
		return;
	}
	ctx->outcome = start_step(&repo, false, s, CAUSE_ENQUEUER, ctx->summary, SL_STARTED);
}

static void
handle_candidate(void *arg)
{
	EnqueueContext *ctx = arg;

	ctx->outcome = HANDLED;
	switch (ctx->candidate)
	{
		case CANDIDATE_FINAL_IMPORT:
			handle_final_import(ctx);
			break;
		case CANDIDATE_ABORTED:
			handle_aborted(ctx);
			break;
		case CANDIDATE_NEW:
			handle_new(ctx);
			break;
	}
}

/* An error aborts the repository; an aborted one being retried fails its retry. */
static void
enqueue_abort_after_error(void *arg)
{
	EnqueueContext *ctx = arg;

	abort_after_error(ctx->id, ctx->error, CAUSE_ENQUEUER, true, ctx->settings, ctx->summary);
}

/* Handle one candidate in isolation; an error aborts only that repository. */
static HandleOutcome
handle_isolated(EnqueueContext *ctx)
{
	bool		ok;

	/* A missing registry URL is the operator's to fix, not this repository's fault. */
	registry_require_url();
	ok = handle_repository(handle_candidate, enqueue_abort_after_error, ctx, &ctx->error,
						   ctx->summary, ctx->path);
	cycle_commit_point();
	return ok ? ctx->outcome : HANDLED;
}

/* Take the next candidate of a kind, if any, and remember it as handled. */
static bool
take_candidate(EnqueueContext *ctx, Candidate kind, Handled *handled)
{
	if (!candidate_next(kind, ctx->settings, handled, &ctx->selected))
		return false;
	ctx->fresh = true;
	ctx->id = ctx->selected.id;
	ctx->path = ctx->selected.path;
	ctx->candidate = kind;
	handled_remember(handled, ctx->id);
	return true;
}

/*
 * Handle the taken candidate; true, with the reason, when the cycle must
 * stop. A repository passed over is listed, and stays handled for the rest
 * of the cycle. Any handling but a failed answer (a 429, an error included)
 * ends a run of failed answers.
 */
static bool
handle_stops(EnqueueContext *ctx, StopReason *stop)
{
	HandleOutcome outcome = handle_isolated(ctx);

	/* A retry that found the pre-import finished: its final import, at once. */
	if (outcome == HANDLED_FINAL_IMPORT_DUE)
	{
		ctx->candidate = CANDIDATE_FINAL_IMPORT;
		ctx->fresh = false;
		ctx->final_list = SL_RETRIED;
		outcome = handle_isolated(ctx);
		ctx->final_list = SL_FINAL_IMPORTS;
	}

	if (outcome == HANDLED_FAILED_ANSWER || outcome == HANDLED_REGISTRY_DOWN)
		summary_add(ctx->summary, SL_UNAVAILABLE, ctx->path, NULL);
	if (outcome == HANDLED_FAILED_ANSWER)
		ctx->failed_in_a_row++;
	else
		ctx->failed_in_a_row = 0;
	switch (outcome)
	{
		case HANDLED:
		case HANDLED_FINAL_IMPORT_DUE:	/* not returned by a final import */
			return false;
		case HANDLED_NOT_READY:
			summary_add(ctx->summary, SL_NOT_READY, ctx->path, NULL);
			return false;
		case HANDLED_TOO_MANY_IMPORTS:
			*stop = STOP_TOO_MANY_IMPORTS;
			return true;
		case HANDLED_FAILED_ANSWER:
			if (ctx->failed_in_a_row < FAILED_ANSWERS_TO_STOP)
				return false;
			*stop = STOP_REGISTRY_UNAVAILABLE;
			return true;
		case HANDLED_REGISTRY_DOWN:
			*stop = STOP_REGISTRY_UNAVAILABLE;
			return true;
	}
	return false;
}

/* Every finished pre-import gets its final import, outside capacity. */
static bool
final_imports(EnqueueContext *ctx, Handled *handled, StopReason *stop)
{
	while (take_candidate(ctx, CANDIDATE_FINAL_IMPORT, handled))
		if (handle_stops(ctx, stop))
			return true;
	return false;
}

/*
 * New work, one repository per round, while below capacity. A round that
 * passed its repository over did something too: the next one goes on.
 */
static StopReason
new_work(EnqueueContext *ctx, Handled *handled)
{
	StopReason	stop;

	for (;;)
	{
		if (count_in_process() >= ctx->settings->capacity)
			return STOP_AT_CAPACITY;
		if (!take_candidate(ctx, CANDIDATE_ABORTED, handled) &&
			!take_candidate(ctx, CANDIDATE_NEW, handled))
			return STOP_NOTHING_TO_DO;
		if (handle_stops(ctx, &stop))
			return stop;
	}
}

/*
 * The capacity and waiting-time gates are evaluated before the final
 * imports, so the final imports of this cycle do not close the gate on
 * new work they did not take a slot from.
 */
static StopReason
enqueue(EnqueueContext *ctx, Handled *handled)
{
	StopReason	gate = STOP_NOTHING_TO_DO;	/* open */
	StopReason	stop;

	if (count_in_process() >= ctx->settings->capacity)
		gate = STOP_AT_CAPACITY;
	else if (waiting_after_finish(ctx->settings))
		gate = STOP_WAITING_TIME;
	if (final_imports(ctx, handled, &stop))
		return stop;
	return gate != STOP_NOTHING_TO_DO ? gate : new_work(ctx, handled);
}

void
enqueue_cycle_body(CycleSummary *summary)
{
	MigrationSettings settings;
	EnqueueContext ctx = {.settings = &settings, .summary = summary,
	.final_list = SL_FINAL_IMPORTS};
	Handled		handled = {.memory = CurrentMemoryContext};

	SPI_connect();
	settings = settings_load();
	if (!settings.enabled)
		summary->stopped = STOP_DISABLED;
	else if (backoff_pending(&summary->retry_after_until))
	{
		summary->has_retry_after = true;
		summary->stopped = STOP_RETRY_AFTER;
	}
	else
		summary->stopped = enqueue(&ctx, &handled);
	if (summary->stopped == STOP_TOO_MANY_IMPORTS && backoff_pending(&summary->retry_after_until))
		summary->has_retry_after = true;
	/* The steps this cycle started become stale max_step_duration from now. */
	if (summary->counts[SL_STARTED] + summary->counts[SL_FINAL_IMPORTS] +
		summary->counts[SL_RETRIED] > 0)
		summary->guard_due_at = GetCurrentTimestamp() +
			(int64) (settings.max_step_duration_s * USECS_PER_SEC);
	/* Free slots and nothing to take: the next one is a repository held back. */
	if (summary->stopped == STOP_NOTHING_TO_DO)
		summary->enqueue_due_at = held_until();
	SPI_finish();
}
