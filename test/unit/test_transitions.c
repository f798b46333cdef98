/*
 * test_transitions.c — the state machine (which event is allowed from which
 * state, and what entering a state changes), plus the names of states and
 * skip reasons.
 *
 * The expectations are written independently of transitions.c: the allowed
 * states of each event are listed as words, and expect_apply() states the
 * effects of entering a state one rule at a time. Hand-written scenarios with literal values
 * follow, so that the rules are also seen at work on concrete rows.
 */
#include "unit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/transitions.h"

/* Old timestamps of a row, all distinct from each other and from NOW. */
#define T_PRE_IMPORT_STARTED 1001
#define T_PRE_IMPORT_DONE 1002
#define T_IMPORT_STARTED 1003
#define T_IMPORT_DONE 1004
#define T_ABORTED 1005
#define T_SKIPPED 1006
#define NOW 777000000

static const struct
{
	MigrationState state;
	const char *name;
}			states[] = {
	{MS_DEFAULT, "default"},
	{MS_PRE_IMPORTING, "pre_importing"},
	{MS_PRE_IMPORT_DONE, "pre_import_done"},
	{MS_IMPORTING, "importing"},
	{MS_IMPORT_DONE, "import_done"},
	{MS_IMPORT_ABORTED, "import_aborted"},
	{MS_IMPORT_SKIPPED, "import_skipped"},
};

#define NSTATES (sizeof(states) / sizeof(states[0]))

/* The skip reasons, in the order of the SQL enum. */
static const char *const reason_names[] = {
	"not_in_plan", "too_many_retries", "too_many_tags", "root_namespace_in_deny_list",
	"migration_canceled", "not_found", "native_import", "migration_forced_canceled",
	"migration_canceled_by_registry",
};

#define NREASONS (sizeof(reason_names) / sizeof(reason_names[0]))

/*
 * The allowed states of each event, written as words. The admin reset
 * takes a skipped or aborted repository back to default.
 */
static const struct
{
	MigrationEvent event;
	const char *allowed_from;
	MigrationState target;
}			events[] = {
	{EV_START_PRE_IMPORT, "default pre_importing importing import_aborted", MS_PRE_IMPORTING},
	{EV_MARK_PRE_IMPORTING, "default pre_import_done importing import_aborted", MS_PRE_IMPORTING},
	{EV_FINISH_PRE_IMPORT, "pre_importing importing import_aborted", MS_PRE_IMPORT_DONE},
	{EV_START_IMPORT, "pre_import_done pre_importing importing import_aborted", MS_IMPORTING},
	{EV_MARK_IMPORTING, "default pre_importing pre_import_done import_aborted", MS_IMPORTING},
	{EV_FINISH_IMPORT, "default pre_importing pre_import_done importing import_aborted",
	MS_IMPORT_DONE},
	{EV_ABORT, "default pre_importing pre_import_done importing", MS_IMPORT_ABORTED},
	{EV_SKIP, "default pre_importing pre_import_done importing import_aborted",
	MS_IMPORT_SKIPPED},
	{EV_RESET, "import_aborted import_skipped", MS_DEFAULT},
	/* An aborted repository whose retry failed before it started stays aborted. */
	{EV_RETRY_FAILED, "import_aborted", MS_IMPORT_ABORTED},
};

#define NEVENTS (sizeof(events) / sizeof(events[0]))

/* True when word is one of the space-separated words of list. */
static bool
in_list(const char *word, const char *list)
{
	size_t		n = strlen(word);
	const char *p = list;

	if (n == 0)
		return false;			/* strstr would find "" everywhere, forever */
	while ((p = strstr(p, word)) != NULL)
	{
		if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
			return true;
		p += n;
	}
	return false;
}

static const char *
state_label(MigrationState state)
{
	for (size_t i = 0; i < NSTATES; i++)
		if (states[i].state == state)
			return states[i].name;
	return "(out of range)";
}

/* ---------------------------------------------------------------- rows */

typedef enum RowShape
{
	ROW_BARE,					/* only what the state's invariant requires */
	ROW_FULL					/* every column set: shows what is kept */
} RowShape;

static void
set_at(OptionalTime *t, int64_t at)
{
	t->set = true;
	t->at = at;
}

/*
 * A row in the given state. Zeroed first, so that a byte-for-byte
 * comparison with a copy is meaningful (padding included).
 */
static RepositoryRow
make_row(MigrationState state, RowShape shape, int32_t retries)
{
	RepositoryRow row;

	memset(&row, 0, sizeof(row));
	row.state = state;
	row.retries_count = retries;
	/* An aborted repository has been aborted at least once (its invariant). */
	if (state == MS_IMPORT_ABORTED && row.retries_count < 1)
		row.retries_count = 1;
	if (shape == ROW_FULL)
	{
		set_at(&row.pre_import_started_at, T_PRE_IMPORT_STARTED);
		set_at(&row.pre_import_done_at, T_PRE_IMPORT_DONE);
		set_at(&row.import_started_at, T_IMPORT_STARTED);
		set_at(&row.import_done_at, T_IMPORT_DONE);
		set_at(&row.aborted_at, T_ABORTED);
		set_at(&row.skipped_at, T_SKIPPED);
		row.has_skipped_reason = true;
		row.skipped_reason = SR_TOO_MANY_TAGS;
		row.has_aborted_in_state = true;
		row.aborted_in_state = MS_PRE_IMPORT_DONE;
		return row;
	}
	switch (state)
	{
		case MS_PRE_IMPORTING:
			set_at(&row.pre_import_started_at, T_PRE_IMPORT_STARTED);
			break;
		case MS_PRE_IMPORT_DONE:
			set_at(&row.pre_import_done_at, T_PRE_IMPORT_DONE);
			break;
		case MS_IMPORTING:
			set_at(&row.import_started_at, T_IMPORT_STARTED);
			break;
		case MS_IMPORT_DONE:
			set_at(&row.import_done_at, T_IMPORT_DONE);
			break;
		case MS_IMPORT_ABORTED:
			set_at(&row.aborted_at, T_ABORTED);
			break;
		case MS_IMPORT_SKIPPED:
			set_at(&row.skipped_at, T_SKIPPED);
			row.has_skipped_reason = true;
			row.skipped_reason = SR_NOT_IN_PLAN;
			break;
		default:
			break;
	}
	return row;
}

static void
check_time(const OptionalTime *got, const OptionalTime *want, const char *column,
		   const char *ctx)
{
	if (CHECK_INT_EQ(got->set, want->set, "%s set? %s", column, ctx) && want->set)
		CHECK_INT_EQ(got->at, want->at, "%s value: %s", column, ctx);
}

/* Compare the columns a row stands for: a value behind a NULL does not count. */
static void
check_row(const RepositoryRow *got, const RepositoryRow *want, const char *ctx)
{
	CHECK_STR_EQ(state_label(got->state), state_label(want->state), "state: %s", ctx);
	check_time(&got->pre_import_started_at, &want->pre_import_started_at,
			   "pre_import_started_at", ctx);
	check_time(&got->pre_import_done_at, &want->pre_import_done_at, "pre_import_done_at", ctx);
	check_time(&got->import_started_at, &want->import_started_at, "import_started_at", ctx);
	check_time(&got->import_done_at, &want->import_done_at, "import_done_at", ctx);
	check_time(&got->aborted_at, &want->aborted_at, "aborted_at", ctx);
	check_time(&got->skipped_at, &want->skipped_at, "skipped_at", ctx);
	CHECK_INT_EQ(got->retries_count, want->retries_count, "retries_count: %s", ctx);
	if (CHECK_INT_EQ(got->has_skipped_reason, want->has_skipped_reason,
					 "skipped_reason set? %s", ctx) && want->has_skipped_reason)
		CHECK_STR_EQ(skip_reason_name(got->skipped_reason),
					 skip_reason_name(want->skipped_reason), "skipped_reason: %s", ctx);
	if (CHECK_INT_EQ(got->has_aborted_in_state, want->has_aborted_in_state,
					 "aborted_in_state set? %s", ctx) && want->has_aborted_in_state)
		CHECK_STR_EQ(state_label(got->aborted_in_state), state_label(want->aborted_in_state),
					 "aborted_in_state: %s", ctx);
}

/* ------------------------------------------ the effects of a state change */

typedef struct Expected
{
	RepositoryRow row;
	int			nsteps;
	TransitionStep steps[TRANSITION_MAX_STEPS];
} Expected;

static void
add_step(Expected *e, MigrationEvent event, MigrationState from, MigrationState to)
{
	e->steps[e->nsteps].event = event;
	e->steps[e->nsteps].old_state = from;
	e->steps[e->nsteps].new_state = to;
	e->steps[e->nsteps].has_reason = false;
	e->nsteps++;
}

/* The last step added wrote this skip reason (the event log keeps it). */
static void
step_wrote_reason(Expected *e, SkipReason reason)
{
	e->steps[e->nsteps - 1].has_reason = true;
	e->steps[e->nsteps - 1].reason = reason;
}

/* What an allowed event must do to `before`, rule by rule. */
static Expected
expect_apply(const RepositoryRow *before, size_t ev, const TransitionRequest *req,
			 int32_t max_retries)
{
	Expected	e = {.row = *before};
	RepositoryRow *r = &e.row;
	MigrationState target = events[ev].target;

	add_step(&e, events[ev].event, before->state, target);
	r->state = target;

	if (events[ev].event == EV_RESET)
	{
		/* Every migration timestamp, reason and counter cleared. */
		r->retries_count = 0;
		r->pre_import_started_at.set = r->pre_import_done_at.set = false;
		r->import_started_at.set = r->import_done_at.set = false;
		r->aborted_at.set = r->skipped_at.set = false;
		r->has_skipped_reason = r->has_aborted_in_state = false;
		return e;
	}

	/* Leaving import_aborted for any state but import_skipped. */
	if (before->state == MS_IMPORT_ABORTED && target != MS_IMPORT_SKIPPED &&
		target != MS_IMPORT_ABORTED)
	{
		r->aborted_at.set = false;
		r->has_aborted_in_state = false;
	}

	if (target == MS_PRE_IMPORTING)
	{
		set_at(&r->pre_import_started_at, NOW);
		r->pre_import_done_at.set = false;
	}
	else if (target == MS_PRE_IMPORT_DONE)
		set_at(&r->pre_import_done_at, NOW);
	else if (target == MS_IMPORTING)
	{
		set_at(&r->import_started_at, NOW);
		r->import_done_at.set = false;
	}
	else if (target == MS_IMPORT_DONE)
	{
		set_at(&r->import_done_at, NOW);
		/* "Finish import as R" */
		if (req->has_reason)
		{
			r->has_skipped_reason = true;
			r->skipped_reason = req->reason;
			step_wrote_reason(&e, req->reason);
		}
	}
	else if (target == MS_IMPORT_SKIPPED)
	{
		set_at(&r->skipped_at, NOW);
		r->has_skipped_reason = true;
		r->skipped_reason = req->reason;
		step_wrote_reason(&e, req->reason);
	}
	else if (target == MS_IMPORT_ABORTED)
	{
		/* "keeps that state with retries_count + 1 and a new aborted_at" */
		if (before->state != MS_IMPORT_ABORTED)
		{
			r->has_aborted_in_state = true;
			r->aborted_in_state = before->state;
		}
		set_at(&r->aborted_at, NOW);
		r->retries_count = before->retries_count + 1;
		/* The automatic skip keeps aborted_at and aborted_in_state. */
		if (r->retries_count >= max_retries)
		{
			r->state = MS_IMPORT_SKIPPED;
			set_at(&r->skipped_at, NOW);
			r->has_skipped_reason = true;
			r->skipped_reason = req->canceled_by_registry ? SR_MIGRATION_CANCELED_BY_REGISTRY
				: SR_TOO_MANY_RETRIES;
			add_step(&e, EV_SKIP, MS_IMPORT_ABORTED, MS_IMPORT_SKIPPED);
			step_wrote_reason(&e, r->skipped_reason);
		}
	}
	return e;
}

/* ------------------------------------------------- the whole matrix */

static void
check_steps(const TransitionOutcome *got, const Expected *want, const char *ctx)
{
	if (!CHECK_INT_EQ(got->nsteps, want->nsteps, "number of steps: %s", ctx))
		return;
	for (int i = 0; i < want->nsteps; i++)
	{
		CHECK_STR_EQ(migration_event_name(got->steps[i].event),
					 migration_event_name(want->steps[i].event), "step %d event: %s", i + 1, ctx);
		CHECK_STR_EQ(state_label(got->steps[i].old_state), state_label(want->steps[i].old_state),
					 "step %d old state: %s", i + 1, ctx);
		CHECK_STR_EQ(state_label(got->steps[i].new_state), state_label(want->steps[i].new_state),
					 "step %d new state: %s", i + 1, ctx);
		if (CHECK_INT_EQ(got->steps[i].has_reason, want->steps[i].has_reason,
						 "step %d wrote a skip reason? %s", i + 1, ctx) && want->steps[i].has_reason)
			CHECK_STR_EQ(skip_reason_name(got->steps[i].reason),
						 skip_reason_name(want->steps[i].reason), "step %d skip reason: %s", i + 1, ctx);
	}
}

/* One event applied to one row: allowed with its effects, or refused untouched. */
static void
check_apply(size_t ev, const RepositoryRow *before, const TransitionRequest *req,
			int32_t max_retries, const char *ctx)
{
	RepositoryRow row = *before;
	bool		allowed = in_list(state_label(before->state), events[ev].allowed_from);
	TransitionOutcome out = transition_apply(&row, req, max_retries, NOW);

	CHECK_INT_EQ(event_allowed(events[ev].event, before->state), allowed, "event_allowed: %s", ctx);
	if (!CHECK_INT_EQ(out.allowed, allowed, "outcome.allowed: %s", ctx))
		return;
	if (!allowed)
	{
		CHECK(memcmp(&row, before, sizeof(row)) == 0, "refused event changed the row: %s", ctx);
		CHECK_INT_EQ(out.nsteps, 0, "refused event recorded steps: %s", ctx);
		return;
	}

	{
		Expected	want = expect_apply(before, ev, req, max_retries);

		check_row(&row, &want.row, ctx);
		check_steps(&out, &want, ctx);
	}
}

/* The requests worth trying for an event: every reason it can carry. */
static int
requests_for(MigrationEvent event, TransitionRequest *reqs)
{
	int			n = 0;

	memset(reqs, 0, sizeof(TransitionRequest) * (NREASONS + 1));
	switch (event)
	{
		case EV_SKIP:
			for (size_t i = 0; i < NREASONS; i++)
				reqs[n++] = (TransitionRequest) {.event = event, .has_reason = true,
				.reason = (SkipReason) i};
			break;
		case EV_FINISH_IMPORT:
			reqs[n++] = (TransitionRequest) {.event = event};
			reqs[n++] = (TransitionRequest) {.event = event, .has_reason = true,
			.reason = SR_NATIVE_IMPORT};
			reqs[n++] = (TransitionRequest) {.event = event, .has_reason = true,
			.reason = SR_NOT_FOUND};
			break;
		case EV_ABORT:
			reqs[n++] = (TransitionRequest) {.event = event};
			reqs[n++] = (TransitionRequest) {.event = event, .canceled_by_registry = true};
			break;
		default:
			reqs[n++] = (TransitionRequest) {.event = event};
			break;
	}
	return n;
}

/* One event from one state, on both row shapes, around every retry limit. */
static void
check_event_from_state(size_t ev, size_t s)
{
	static const int32_t max_retries_cases[] = {0, 1, 2, 3, 100};
	static const int32_t retries_cases[] = {0, 1, 2, 5};
	static const RowShape shapes[] = {ROW_BARE, ROW_FULL};
	TransitionRequest reqs[NREASONS + 1];
	int			nreqs = requests_for(events[ev].event, reqs);

	for (size_t sh = 0; sh < 2; sh++)
		for (size_t rc = 0; rc < sizeof(retries_cases) / sizeof(int32_t); rc++)
			for (size_t m = 0; m < sizeof(max_retries_cases) / sizeof(int32_t); m++)
				for (int q = 0; q < nreqs; q++)
				{
					RepositoryRow before = make_row(states[s].state, shapes[sh],
													retries_cases[rc]);
					char		ctx[300];

					snprintf(ctx, sizeof(ctx),
							 "%s from %s (%s row, retries %d, max_retries %d, "
							 "reason %s, canceled_by_registry %d)",
							 migration_event_name(events[ev].event), states[s].name,
							 shapes[sh] == ROW_BARE ? "bare" : "full",
							 before.retries_count, max_retries_cases[m],
							 reqs[q].has_reason ? skip_reason_name(reqs[q].reason) : "-",
							 reqs[q].canceled_by_registry);
					check_apply(ev, &before, &reqs[q], max_retries_cases[m], ctx);
				}
}

static void
check_matrix(void)
{
	for (size_t ev = 0; ev < NEVENTS; ev++)
		for (size_t s = 0; s < NSTATES; s++)
			check_event_from_state(ev, s);
}

/* ------------------------------------------------ literal scenarios */

static TransitionOutcome
apply(RepositoryRow *row, MigrationEvent event, int32_t max_retries, int64_t now)
{
	TransitionRequest req = {.event = event};

	return transition_apply(row, &req, max_retries, now);
}

static void
check_abort_below_limit(void)
{
	RepositoryRow row = make_row(MS_IMPORTING, ROW_BARE, 0);
	TransitionOutcome out = apply(&row, EV_ABORT, 3, 5000);

	CHECK(out.allowed && out.nsteps == 1, "abort from importing: one step");
	CHECK_INT_EQ(row.state, MS_IMPORT_ABORTED, "abort below the limit stays aborted");
	CHECK_INT_EQ(row.retries_count, 1, "abort counts one retry");
	CHECK(row.aborted_at.set && row.aborted_at.at == 5000, "aborted_at is now");
	CHECK(row.has_aborted_in_state && row.aborted_in_state == MS_IMPORTING,
		  "aborted_in_state is the state left");
	CHECK(row.import_started_at.set && row.import_started_at.at == T_IMPORT_STARTED,
		  "abort keeps the start time of the step");
	CHECK(!row.skipped_at.set && !row.has_skipped_reason, "no skip below the limit");
	CHECK(out.steps[0].event == EV_ABORT && out.steps[0].old_state == MS_IMPORTING &&
		  out.steps[0].new_state == MS_IMPORT_ABORTED, "the step recorded");
}

/*
 * A counter written directly at the top of its type: the next abort must
 * not overflow it (UBSan stops here otherwise), and the row is skipped.
 */
static void
check_abort_at_counter_limit(void)
{
	RepositoryRow row = make_row(MS_IMPORTING, ROW_BARE, INT32_MAX);
	TransitionOutcome out = apply(&row, EV_ABORT, 3, 5000);

	CHECK(out.allowed, "abort with the counter at its maximum");
	CHECK_INT_EQ(row.retries_count, INT32_MAX, "the counter stays at its maximum");
	CHECK_INT_EQ(row.state, MS_IMPORT_SKIPPED, "past the limit: skipped");
}

/* Retry: leaving import_aborted clears the abort columns but not the counter. */
static void
check_retry_clears_abort(void)
{
	RepositoryRow row = make_row(MS_IMPORT_ABORTED, ROW_FULL, 2);
	TransitionOutcome out = apply(&row, EV_START_PRE_IMPORT, 3, 6000);

	CHECK(out.allowed && out.nsteps == 1, "retry pre-import allowed");
	CHECK_INT_EQ(row.state, MS_PRE_IMPORTING, "retry pre-import");
	CHECK(!row.aborted_at.set && !row.has_aborted_in_state, "abort columns cleared");
	CHECK_INT_EQ(row.retries_count, 2, "a retry does not lower retries_count");
	CHECK(row.pre_import_started_at.at == 6000 && !row.pre_import_done_at.set,
		  "pre-import restarted");
	CHECK(row.skipped_at.set && row.skipped_at.at == T_SKIPPED,
		  "nothing else clears a timestamp");
}

static void
check_automatic_skip(int32_t retries, int32_t max_retries, bool by_registry,
					 const char *reason)
{
	RepositoryRow row = make_row(MS_PRE_IMPORTING, ROW_BARE, retries);
	TransitionRequest req = {.event = EV_ABORT, .canceled_by_registry = by_registry};
	TransitionOutcome out = transition_apply(&row, &req, max_retries, 7000);

	CHECK(out.allowed, "abort allowed (retries %d, max %d)", retries, max_retries);
	CHECK_INT_EQ(row.state, MS_IMPORT_SKIPPED, "skipped at the limit (retries %d, max %d)",
				 retries, max_retries);
	CHECK_STR_EQ(row.has_skipped_reason ? skip_reason_name(row.skipped_reason) : NULL, reason,
				 "reason (retries %d, max %d)", retries, max_retries);
	CHECK_INT_EQ(row.retries_count, retries + 1, "the abort is counted");
	CHECK(row.skipped_at.set && row.skipped_at.at == 7000, "skipped_at is now");
	CHECK(row.aborted_at.set && row.aborted_at.at == 7000, "the skip keeps aborted_at");
	CHECK(row.has_aborted_in_state && row.aborted_in_state == MS_PRE_IMPORTING,
		  "the skip keeps aborted_in_state");
	if (CHECK_INT_EQ(out.nsteps, 2, "abort then skip (retries %d, max %d)", retries, max_retries))
	{
		CHECK(out.steps[0].event == EV_ABORT && out.steps[0].old_state == MS_PRE_IMPORTING &&
			  out.steps[0].new_state == MS_IMPORT_ABORTED, "first step: abort");
		CHECK(out.steps[1].event == EV_SKIP && out.steps[1].old_state == MS_IMPORT_ABORTED &&
			  out.steps[1].new_state == MS_IMPORT_SKIPPED, "second step: skip");
	}
}

static void
check_automatic_skips(void)
{
	check_automatic_skip(2, 3, false, "too_many_retries");
	check_automatic_skip(2, 3, true, "migration_canceled_by_registry");
	check_automatic_skip(0, 0, false, "too_many_retries");
	check_automatic_skip(0, 0, true, "migration_canceled_by_registry");
	check_automatic_skip(0, 1, false, "too_many_retries");
	check_automatic_skip(9, 3, false, "too_many_retries");
}

/* max_retries = 2: the first abort is retried, the second one skips. */
static void
check_life_with_two_retries(void)
{
	RepositoryRow row = make_row(MS_DEFAULT, ROW_BARE, 0);

	CHECK_INT_EQ(apply(&row, EV_START_PRE_IMPORT, 2, 10).nsteps, 1, "start");
	CHECK_INT_EQ(apply(&row, EV_FINISH_PRE_IMPORT, 2, 20).nsteps, 1, "pre-import done");
	CHECK_INT_EQ(apply(&row, EV_START_IMPORT, 2, 30).nsteps, 1, "final import");
	CHECK_INT_EQ(apply(&row, EV_ABORT, 2, 40).nsteps, 1, "first abort");
	CHECK_INT_EQ(row.state, MS_IMPORT_ABORTED, "first abort is retried later");
	CHECK_INT_EQ(apply(&row, EV_START_IMPORT, 2, 50).nsteps, 1, "retry import");
	CHECK(!row.aborted_at.set && !row.has_aborted_in_state, "retry cleared the abort");
	CHECK(row.pre_import_done_at.at == 20 && row.import_started_at.at == 50,
		  "retry import keeps the pre-import and restarts the import");
	CHECK_INT_EQ(apply(&row, EV_ABORT, 2, 60).nsteps, 2, "second abort skips");
	CHECK_INT_EQ(row.retries_count, 2, "two aborts");
	CHECK(row.aborted_at.at == 60 && row.aborted_in_state == MS_IMPORTING,
		  "diagnosis of the last failure kept");
	CHECK(!apply(&row, EV_START_IMPORT, 2, 70).allowed, "skipped is final");
	CHECK(apply(&row, EV_RESET, 2, 80).allowed, "reset leaves skipped");
	{
		RepositoryRow fresh = make_row(MS_DEFAULT, ROW_BARE, 0);

		check_row(&row, &fresh, "reset after a skip");
	}
}

static void
check_explicit_skip_and_finish_as(void)
{
	RepositoryRow row = make_row(MS_IMPORT_ABORTED, ROW_BARE, 1);
	TransitionRequest skip = {.event = EV_SKIP, .has_reason = true,
	.reason = SR_ROOT_NAMESPACE_IN_DENY_LIST};
	TransitionRequest native = {.event = EV_FINISH_IMPORT, .has_reason = true,
	.reason = SR_NATIVE_IMPORT};
	TransitionOutcome out = transition_apply(&row, &skip, 3, 900);

	CHECK(out.allowed && out.nsteps == 1, "skip from aborted: one step");
	CHECK(row.aborted_at.set && row.aborted_at.at == T_ABORTED,
		  "skip from aborted keeps aborted_at");
	CHECK_INT_EQ(row.skipped_reason, SR_ROOT_NAMESPACE_IN_DENY_LIST, "the given reason");

	row = make_row(MS_DEFAULT, ROW_BARE, 0);
	out = transition_apply(&row, &native, 3, 901);
	CHECK(out.allowed && row.state == MS_IMPORT_DONE, "finish import as native_import");
	CHECK(row.import_done_at.set && row.import_done_at.at == 901, "import_done_at is now");
	CHECK(row.has_skipped_reason && row.skipped_reason == SR_NATIVE_IMPORT,
		  "finish import as R sets the reason");
	CHECK(!row.skipped_at.set, "finish import as R is not a skip");
}

/* Refused events and values outside the enums leave the row as it was. */
static void
check_out_of_range(void)
{
	RepositoryRow before = make_row(MS_DEFAULT, ROW_FULL, 1);
	RepositoryRow row = before;
	TransitionRequest bad_event = {.event = (MigrationEvent) EV_COUNT};
	TransitionRequest start = {.event = EV_START_PRE_IMPORT};
	TransitionOutcome out = transition_apply(&row, &bad_event, 3, NOW);

	CHECK(!out.allowed && out.nsteps == 0, "unknown event refused");
	CHECK(memcmp(&row, &before, sizeof(row)) == 0, "unknown event changes nothing");

	before.state = (MigrationState) MS_COUNT;
	row = before;
	out = transition_apply(&row, &start, 3, NOW);
	CHECK(!out.allowed && out.nsteps == 0, "unknown state refused");
	CHECK(memcmp(&row, &before, sizeof(row)) == 0, "unknown state changes nothing");

	for (size_t s = 0; s < NSTATES; s++)
		CHECK(!event_allowed((MigrationEvent) EV_COUNT, states[s].state),
			  "event past the last from %s", states[s].name);
	for (size_t ev = 0; ev < NEVENTS; ev++)
	{
		CHECK(!event_allowed(events[ev].event, (MigrationState) MS_COUNT),
			  "%s from a state past the last", migration_event_name(events[ev].event));
		CHECK(!event_allowed(events[ev].event, (MigrationState) -1),
			  "%s from a negative state", migration_event_name(events[ev].event));
	}
}

/* --------------------------------------- event_allowed_states_text */

/* "a, b, c" in the order of the SQL enum, built from the allowed-state words. */
static void
expected_states_text(size_t ev, char *buf, size_t buflen)
{
	buf[0] = '\0';
	for (size_t s = 0; s < NSTATES; s++)
	{
		if (!in_list(states[s].name, events[ev].allowed_from))
			continue;
		if (buf[0] != '\0')
			strncat(buf, ", ", buflen - strlen(buf) - 1);
		strncat(buf, states[s].name, buflen - strlen(buf) - 1);
	}
}

/*
 * Every buffer length from 0 to one past the full text: the result is the
 * longest prefix that fits, always terminated, never past buflen. The
 * buffer is allocated at its exact length so AddressSanitizer sees any
 * byte written beyond it.
 */
static void
check_states_text_truncation(size_t ev, const char *full)
{
	size_t		len = strlen(full);
	const char *name = migration_event_name(events[ev].event);

	for (size_t buflen = 0; buflen <= len + 1; buflen++)
	{
		size_t		alloc = buflen > 0 ? buflen : 1;
		char	   *buf = malloc(alloc);
		size_t		keep = buflen > 0 && buflen - 1 < len ? buflen - 1 : len;

		if (buf == NULL)
			abort();
		memset(buf, 'X', alloc);
		event_allowed_states_text(events[ev].event, buf, buflen);
		if (buflen == 0)
			CHECK(buf[0] == 'X', "%s: buflen 0 writes nothing", name);
		else if (CHECK(memchr(buf, '\0', buflen) != NULL,
					   "%s: buflen %zu is NUL-terminated", name, buflen))
			CHECK(strlen(buf) == keep && strncmp(buf, full, keep) == 0,
				  "%s: buflen %zu gives \"%s\", a prefix of \"%s\"", name, buflen, buf, full);
		free(buf);
	}
}

static void
check_states_text(void)
{
	for (size_t ev = 0; ev < NEVENTS; ev++)
	{
		char		want[200];
		char		got[200];

		expected_states_text(ev, want, sizeof(want));
		event_allowed_states_text(events[ev].event, got, sizeof(got));
		CHECK_STR_EQ(got, want, "allowed states of %s", migration_event_name(events[ev].event));
		check_states_text_truncation(ev, want);
	}
	/* One spelled out in full, as an error message shows it. */
	{
		char		got[200];

		event_allowed_states_text(EV_ABORT, got, sizeof(got));
		CHECK_STR_EQ(got, "default, pre_importing, pre_import_done, importing", "abort");
	}
}

/* ------------------------------------------------------------ names */

static void
check_state_names(void)
{
	CHECK_INT_EQ(MS_COUNT, NSTATES, "number of states");
	for (size_t i = 0; i < NSTATES; i++)
	{
		MigrationState back = (MigrationState) -1;

		/* The enum order is the order of the SQL enum type. */
		CHECK_INT_EQ(states[i].state, i, "position of %s", states[i].name);
		CHECK_STR_EQ(migration_state_name(states[i].state), states[i].name, "state %zu", i);
		if (CHECK(migration_state_from_name(states[i].name, &back), "lookup %s", states[i].name))
			CHECK_INT_EQ(back, states[i].state, "round trip of %s", states[i].name);
	}
	CHECK_STR_EQ(migration_state_name((MigrationState) MS_COUNT), "?", "state past the last");
	CHECK_STR_EQ(migration_state_name((MigrationState) -1), "?", "negative state");
	CHECK_STR_EQ(migration_state_name((MigrationState) 4096), "?", "state far out of range");
}

static void
check_reason_names(void)
{
	CHECK_INT_EQ(SR_COUNT, NREASONS, "number of skip reasons");
	for (size_t i = 0; i < NREASONS; i++)
	{
		SkipReason back = (SkipReason) -1;

		CHECK_STR_EQ(skip_reason_name((SkipReason) i), reason_names[i], "reason %zu", i);
		if (CHECK(skip_reason_from_name(reason_names[i], &back), "lookup %s", reason_names[i]))
			CHECK_INT_EQ(back, i, "round trip of %s", reason_names[i]);
	}
	CHECK_STR_EQ(skip_reason_name((SkipReason) SR_COUNT), "?", "reason past the last");
	CHECK_STR_EQ(skip_reason_name((SkipReason) -1), "?", "negative reason");
}

static void
check_unknown_names(void)
{
	static const char *const unknown[] = {
		"", "Default", "DEFAULT", "default ", " default", "aborted", "import-done",
		"pre_import", "skipped", "too_many_retries_", "Not_Found", "?",
	};
	MigrationState state;
	SkipReason	reason;

	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
	{
		CHECK(!migration_state_from_name(unknown[i], &state), "state \"%s\"", unknown[i]);
		CHECK(!skip_reason_from_name(unknown[i], &reason), "reason \"%s\"", unknown[i]);
	}
	/* A state is not a reason and a reason is not a state. */
	CHECK(!skip_reason_from_name("import_skipped", &reason), "state as reason");
	CHECK(!migration_state_from_name("not_found", &state), "reason as state");
}

static void
check_event_names(void)
{
	CHECK_INT_EQ(EV_COUNT, NEVENTS, "number of events");
	for (size_t i = 0; i < NEVENTS; i++)
	{
		const char *name = migration_event_name(events[i].event);

		CHECK(name != NULL && name[0] != '\0' && strcmp(name, "?") != 0, "event %zu named", i);
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(name, migration_event_name(events[j].event)) != 0,
				  "events %zu and %zu share the name %s", i, j, name);
	}
	CHECK_STR_EQ(migration_event_name((MigrationEvent) EV_COUNT), "?", "event past the last");
	CHECK_STR_EQ(migration_event_name((MigrationEvent) -1), "?", "negative event");
}

/* "In process" (holds a slot) and "final" (only a reset leaves it). */
static void
check_state_classes(void)
{
	for (size_t i = 0; i < NSTATES; i++)
	{
		CHECK_INT_EQ(migration_state_is_final(states[i].state),
					 in_list(states[i].name, "import_done import_skipped"),
					 "is_final(%s)", states[i].name);
		CHECK_INT_EQ(migration_state_in_process(states[i].state),
					 in_list(states[i].name, "pre_importing pre_import_done importing"),
					 "in_process(%s)", states[i].name);
	}
}

void
test_transitions(void)
{
	check_matrix();
	check_abort_below_limit();
	check_abort_at_counter_limit();
	check_retry_clears_abort();
	check_automatic_skips();
	check_life_with_two_retries();
	check_explicit_skip_and_finish_as();
	check_out_of_range();
	check_states_text();
	check_state_names();
	check_reason_names();
	check_unknown_names();
	check_event_names();
	check_state_classes();
}
