/*
 * transitions.c — which event is allowed from which state (the table
 * below) and the effects of entering a state (transition_apply).
 */
#include "core/transitions.h"

#include <stdio.h>
#include <string.h>

#define BIT(state) (1u << (state))

static const struct
{
	const char *name;
	unsigned	allowed_from;	/* bit set of MigrationState */
	MigrationState target;
}			events[EV_COUNT] = {
	[EV_START_PRE_IMPORT] = {"start_pre_import",
		BIT(MS_DEFAULT) | BIT(MS_PRE_IMPORTING) | BIT(MS_IMPORTING) | BIT(MS_IMPORT_ABORTED),
	MS_PRE_IMPORTING},
	[EV_MARK_PRE_IMPORTING] = {"mark_pre_importing",
		BIT(MS_DEFAULT) | BIT(MS_PRE_IMPORT_DONE) | BIT(MS_IMPORTING) | BIT(MS_IMPORT_ABORTED),
	MS_PRE_IMPORTING},
	[EV_FINISH_PRE_IMPORT] = {"finish_pre_import",
		BIT(MS_PRE_IMPORTING) | BIT(MS_IMPORTING) | BIT(MS_IMPORT_ABORTED),
	MS_PRE_IMPORT_DONE},
	[EV_START_IMPORT] = {"start_import",
		BIT(MS_PRE_IMPORT_DONE) | BIT(MS_PRE_IMPORTING) | BIT(MS_IMPORTING) | BIT(MS_IMPORT_ABORTED),
	MS_IMPORTING},
	[EV_MARK_IMPORTING] = {"mark_importing",
		BIT(MS_DEFAULT) | BIT(MS_PRE_IMPORTING) | BIT(MS_PRE_IMPORT_DONE) | BIT(MS_IMPORT_ABORTED),
	MS_IMPORTING},
	[EV_FINISH_IMPORT] = {"finish_import",
		BIT(MS_DEFAULT) | BIT(MS_PRE_IMPORTING) | BIT(MS_PRE_IMPORT_DONE) | BIT(MS_IMPORTING) |
		BIT(MS_IMPORT_ABORTED),
	MS_IMPORT_DONE},
	[EV_ABORT] = {"abort",
		BIT(MS_DEFAULT) | BIT(MS_PRE_IMPORTING) | BIT(MS_PRE_IMPORT_DONE) | BIT(MS_IMPORTING),
	MS_IMPORT_ABORTED},
	[EV_SKIP] = {"skip",
		BIT(MS_DEFAULT) | BIT(MS_PRE_IMPORTING) | BIT(MS_PRE_IMPORT_DONE) | BIT(MS_IMPORTING) |
		BIT(MS_IMPORT_ABORTED),
	MS_IMPORT_SKIPPED},
	[EV_RESET] = {"reset",
		BIT(MS_IMPORT_ABORTED) | BIT(MS_IMPORT_SKIPPED),
	MS_DEFAULT},
	[EV_RETRY_FAILED] = {"retry_failed",
		BIT(MS_IMPORT_ABORTED),
	MS_IMPORT_ABORTED},
};

const char *
migration_event_name(MigrationEvent event)
{
	return (unsigned) event < EV_COUNT ? events[event].name : "?";
}

bool
event_allowed(MigrationEvent event, MigrationState from)
{
	return (unsigned) event < EV_COUNT && (unsigned) from < MS_COUNT &&
		(events[event].allowed_from & BIT(from)) != 0;
}

void
event_allowed_states_text(MigrationEvent event, char *buf, size_t buflen)
{
	size_t		used = 0;

	if (buflen == 0)
		return;
	buf[0] = '\0';
	for (int s = 0; s < MS_COUNT; s++)
	{
		int			n;

		if (!event_allowed(event, (MigrationState) s))
			continue;
		n = snprintf(buf + used, buflen - used, "%s%s",
					 used > 0 ? ", " : "", migration_state_name((MigrationState) s));
		if (n < 0 || (size_t) n >= buflen - used)
			return;				/* truncated: buf is still terminated */
		used += (size_t) n;
	}
}

static void
set_time(OptionalTime *t, int64_t now)
{
	t->set = true;
	t->at = now;
}

static void
clear_time(OptionalTime *t)
{
	t->set = false;
	t->at = 0;
}

/* Back to `default`: the admin reset forgets the whole migration history. */
static void
clear_migration(RepositoryRow *row)
{
	clear_time(&row->pre_import_started_at);
	clear_time(&row->pre_import_done_at);
	clear_time(&row->import_started_at);
	clear_time(&row->import_done_at);
	clear_time(&row->aborted_at);
	clear_time(&row->skipped_at);
	row->retries_count = 0;
	row->has_skipped_reason = false;
	row->has_aborted_in_state = false;
}

static void
enter_state(RepositoryRow *row, MigrationState target, const TransitionRequest *request,
			int64_t now)
{
	MigrationState old = row->state;

	if (old == MS_IMPORT_ABORTED && target != MS_IMPORT_SKIPPED && target != MS_IMPORT_ABORTED)
	{
		clear_time(&row->aborted_at);
		row->has_aborted_in_state = false;
	}

	switch (target)
	{
		case MS_DEFAULT:
			clear_migration(row);
			break;
		case MS_PRE_IMPORTING:
			set_time(&row->pre_import_started_at, now);
			clear_time(&row->pre_import_done_at);
			break;
		case MS_PRE_IMPORT_DONE:
			set_time(&row->pre_import_done_at, now);
			break;
		case MS_IMPORTING:
			set_time(&row->import_started_at, now);
			clear_time(&row->import_done_at);
			break;
		case MS_IMPORT_DONE:
			set_time(&row->import_done_at, now);
			if (request->has_reason)
			{
				row->has_skipped_reason = true;
				row->skipped_reason = request->reason;
			}
			break;
		case MS_IMPORT_ABORTED:
			/* A failed retry keeps the step of the original abort. */
			if (old != MS_IMPORT_ABORTED)
			{
				row->has_aborted_in_state = true;
				row->aborted_in_state = old;
			}
			set_time(&row->aborted_at, now);
			/*
			 * Rows can be written directly: a count already at the top of
			 * its type stays there (it is past any limit) instead of
			 * overflowing.
			 */
			if (row->retries_count < INT32_MAX)
				row->retries_count++;
			break;
		case MS_IMPORT_SKIPPED:
			set_time(&row->skipped_at, now);
			row->has_skipped_reason = true;
			row->skipped_reason = request->reason;
			break;
	}
	row->state = target;
}

/* The step is recorded with the reason it wrote, so its history explains a skip. */
static void
record_step(TransitionOutcome *outcome, const TransitionRequest *request, MigrationState old,
			MigrationState new)
{
	TransitionStep *step = &outcome->steps[outcome->nsteps++];

	step->event = request->event;
	step->old_state = old;
	step->new_state = new;
	step->has_reason = request->event == EV_SKIP ||
		(request->event == EV_FINISH_IMPORT && request->has_reason);
	step->reason = step->has_reason ? request->reason : (SkipReason) 0;
}

TransitionOutcome
transition_apply(RepositoryRow *row, const TransitionRequest *request,
				 int32_t max_retries, int64_t now)
{
	TransitionOutcome outcome = {0};
	MigrationState old = row->state;
	MigrationEvent event = request->event;

	if (!event_allowed(event, old))
		return outcome;
	outcome.allowed = true;

	enter_state(row, events[event].target, request, now);
	record_step(&outcome, request, old, row->state);

	/* The automatic skip at the retry limit keeps aborted_at and aborted_in_state. */
	if (row->state == MS_IMPORT_ABORTED && row->retries_count >= max_retries)
	{
		TransitionRequest skip = {.event = EV_SKIP, .has_reason = true,
			.reason = request->canceled_by_registry ? SR_MIGRATION_CANCELED_BY_REGISTRY
		: SR_TOO_MANY_RETRIES};

		enter_state(row, MS_IMPORT_SKIPPED, &skip, now);
		record_step(&outcome, &skip, MS_IMPORT_ABORTED, MS_IMPORT_SKIPPED);
	}
	return outcome;
}
