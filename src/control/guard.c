/*
 * guard.c — the guard cycle: looks at repositories whose step has lasted
 * longer than max_step_duration, asks the registry what it is doing for all
 * of them at once, and cancels, aborts or records what it finds.
 *
 * Each repository is read without a lock; every request about it (tags,
 * cancel, status) is made before its row is locked to apply the outcome,
 * and a final import that follows a finished pre-import is requested only
 * after that change is committed (when the cycle commits: the worker, CALL).
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/timestamp.h"

#include "control/changes.h"
#include "control/cycle.h"
#include "control/failure_reports.h"
#include "control/guard.h"
#include "control/reconcile.h"
#include "control/starts.h"
#include "registry/registry_client.h"
#include "store/backoff.h"
#include "store/settings.h"
#include "store/spi_util.h"
#include "store/state_machine.h"
#include "store/state_sql.h"

/* The guard lists a step the registry runs after all as "marked". */
static const ReconcileLists guard_lists = {
	.marked = SL_MARKED,
	.list_pre_import_finish = true,
};

typedef struct StaleRepository
{
	int64		id;
	char	   *path;
	MigrationState state;
	TimestampTz step_started;
	RegistryAnswer status;		/* the answer of the cycle's status batch */
} StaleRepository;

typedef struct GuardContext
{
	const MigrationSettings *settings;
	CycleSummary *summary;
	StaleRepository *stale;
	Repository	repo;			/* the row, as read */
	bool		final_import_due;	/* a finished pre-import was recorded */
	const char *error;			/* the error that ended guard_one, if any */
} GuardContext;

/* Stale steps, oldest first, served by the two partial indexes. */
static StaleRepository *
select_stale(const MigrationSettings *s, int *count, MemoryContext cycle_memory)
{
	MemoryContext spi_memory;
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2];
	StaleRepository *stale;

	values[0] = TimestampTzGetDatum(GetCurrentTimestamp() -
									(int64) (s->max_step_duration_s * USECS_PER_SEC));
	values[1] = Int32GetDatum(s->guard_batch_size);
	if (plan == NULL)
		spi_cached_plan(&plan,
						psprintf("SELECT id, path, state::text, started FROM ("
								 " (SELECT id, path, state, pre_import_started_at AS started"
								 "   FROM registry_migration.repositories"
								 "  WHERE state = %s AND pre_import_started_at < $1"
								 "  ORDER BY pre_import_started_at, id LIMIT $2)"
								 " UNION ALL"
								 " (SELECT id, path, state, import_started_at"
								 "   FROM registry_migration.repositories"
								 "  WHERE state = %s AND import_started_at < $1"
								 "  ORDER BY import_started_at, id LIMIT $2)) AS s"
								 " ORDER BY started, id LIMIT $2",
								 state_sql_literal(MS_PRE_IMPORTING),
								 state_sql_literal(MS_IMPORTING)),
						2, types);
	spi_run(plan, values, NULL, true, 0, SPI_OK_SELECT);
	*count = (int) SPI_processed;
	/* Kept across the commit points of the cycle. */
	spi_memory = MemoryContextSwitchTo(cycle_memory);
	stale = palloc0(sizeof(StaleRepository) * Max(*count, 1));
	for (int i = 0; i < *count; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		stale[i].id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		stale[i].path = SPI_getvalue(tuple, desc, 2);
		migration_state_from_name(SPI_getvalue(tuple, desc, 3), &stale[i].state);
		stale[i].step_started = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 4, &isnull));
	}
	MemoryContextSwitchTo(spi_memory);
	return stale;
}

static double
age_seconds(TimestampTz since)
{
	return (double) (GetCurrentTimestamp() - since) / USECS_PER_SEC;
}

/*
 * The long-running threshold of a step, in seconds: import_timeout for an
 * import; for a pre-import, pre_import_timeout or, when larger, the tag
 * count times pre_import_tags_rate (big repositories take longer). The tags
 * are asked for only once the step is older than list_after_s, and only as
 * far as needed to cover age_s.
 */
static double
step_threshold(const GuardContext *ctx, double age_s, double list_after_s)
{
	const MigrationSettings *s = ctx->settings;
	double		rate = s->pre_import_tags_rate;
	RegistryAnswer tags;
	int64		enough;

	if (ctx->stale->state == MS_IMPORTING)
		return s->import_timeout_s;
	if (rate <= 0 || age_s <= list_after_s)
		return s->pre_import_timeout_s;
	/* Enough tags to cover the age; beyond any real count, count them all (0). */
	enough = age_s / rate < 1e15 ? Max((int64) ceil(age_s / rate), 1) : 0;
	tags = registry_count_tags(ctx->stale->path, enough);
	/* A failed listing counts as 0 tags. */
	if (tags.answer != ANSWER_OK)
		return s->pre_import_timeout_s;
	return Max(s->pre_import_timeout_s, (double) tags.tags * rate);
}

static void
abort_step(GuardContext *ctx, const EventNote *note)
{
	abort_listed(&ctx->repo, false, note, ctx->settings, ctx->summary);
}

/*
 * The final import that follows a finished pre-import, while starts are
 * allowed; in its own subtransaction, after the pre-import's end was
 * committed.
 */
static void
guard_final_import(void *arg)
{
	GuardContext *ctx = arg;
	TimestampTz until;

	if (!ctx->settings->enabled || backoff_pending(&until))
		return;
	if (!read_unchanged(ctx->stale->id, ctx->stale->path, MS_PRE_IMPORT_DONE, NULL,
						&ctx->repo, ctx->summary))
		return;
	(void) start_step(&ctx->repo, true, ctx->settings, CAUSE_GUARD, ctx->summary,
					  SL_FINAL_IMPORTS);
}

/*
 * Reconcile with the registry's status. Returns false when the decision is
 * none, unknown or a retry, which the caller treats its own way.
 */
static bool
act_on_status(GuardContext *ctx, const char *registry_status, const EventNote *note)
{
	RetryDecision decision;

	switch (reconcile(&ctx->repo, registry_status, note, ctx->settings, ctx->summary,
					  &guard_lists, &decision))
	{
		case RECONCILED:
			return true;
		case RECONCILED_START_IMPORT:
			ctx->final_import_due = true;
			return true;
		case NOT_RECONCILED:
			break;
	}
	return false;
}

/*
 * A step the guard can neither cancel nor explain (why says what went
 * wrong, reason says it in the summary): left alone for the next cycle, unless it has lasted more than
 * twice its long-running threshold — then aborted, so that it does not
 * hold a slot forever.
 */
static void
abort_when_overdue(GuardContext *ctx, double threshold_s, EventNote *note, const char *why,
				   LeftAloneReason reason)
{
	if (age_seconds(ctx->stale->step_started) > 2 * threshold_s)
	{
		note->detail = psprintf("%s, and the step has lasted more than twice its long-running threshold",
								why);
		abort_step(ctx, note);
	}
	else
		summary_left_alone(ctx->summary, ctx->repo.path, reason);
}

/*
 * A confirmed long-running step: cancel it on the registry. A cancel that
 * would be the repository's last retry skips it as migration_canceled.
 * threshold_s is the step's long-running threshold.
 */
static void
cancel_long_running(GuardContext *ctx, double threshold_s)
{
	RegistryAnswer cancel = registry_call(CALL_CANCEL, ctx->repo.path);
	EventNote	note = {.cause = CAUSE_GUARD, .http_status = (int) cancel.http_status};
	RegistryAnswer status;

	if (cancel.answer == ANSWER_ACCEPTED)
	{
		summary_add(ctx->summary, SL_CANCELED, ctx->repo.path, NULL);
		note.detail = "long-running step canceled";
		if (ctx->repo.row.retries_count >= ctx->settings->max_retries - 1)
		{
			TransitionRequest skip = {.event = EV_SKIP, .has_reason = true,
			.reason = SR_MIGRATION_CANCELED};

			change_listed(&ctx->repo, &skip, &note, ctx->settings, ctx->summary, SL_SKIPPED);
		}
		else
			abort_step(ctx, &note);
		return;
	}

	/* Refused (or no usable answer): reconcile from the registry's real status. */
	status = registry_call(CALL_STATUS, ctx->repo.path);
	note.http_status = (int) status.http_status;
	note.registry_status = status.registry_status;
	note.detail = psprintf("cancel not accepted (%s)",
						   cancel.problem ? cancel.problem : answer_class_name(cancel.answer));
	if (status.answer != ANSWER_UNAVAILABLE && act_on_status(ctx, status.registry_status, &note))
		return;
	abort_when_overdue(ctx, threshold_s, &note, note.detail, LA_CANCEL_NOT_ACCEPTED);
}

static bool
confirms_running(const StaleRepository *stale)
{
	RegistryStatus status = registry_status_parse(stale->status.registry_status);

	return (stale->state == MS_PRE_IMPORTING && status == RS_PRE_IMPORT_IN_PROGRESS) ||
		(stale->state == MS_IMPORTING && status == RS_IMPORT_IN_PROGRESS);
}

/* One stale repository, in its own subtransaction. */
static void
guard_one(void *arg)
{
	GuardContext *ctx = arg;
	StaleRepository *stale = ctx->stale;
	const RegistryAnswer *a = &stale->status;
	EventNote	note = {.cause = CAUSE_GUARD, .http_status = (int) a->http_status,
	.registry_status = a->registry_status, .detail = a->problem};
	double		age_s;
	double		threshold_s;

	if (!read_unchanged(stale->id, stale->path, stale->state, &stale->step_started,
						&ctx->repo, ctx->summary))
		return;
	age_s = age_seconds(stale->step_started);

	if (a->answer == ANSWER_UNAVAILABLE)
	{
		threshold_s = step_threshold(ctx, age_s, 2 * ctx->settings->pre_import_timeout_s);
		abort_when_overdue(ctx, threshold_s, &note, psprintf("registry unavailable (%s)", a->problem),
						   LA_REGISTRY_UNAVAILABLE);
		return;
	}
	if (confirms_running(stale))
	{
		threshold_s = step_threshold(ctx, age_s, ctx->settings->pre_import_timeout_s);
		if (age_s > threshold_s)
			cancel_long_running(ctx, threshold_s);
		else
		{
			summary_left_alone(ctx->summary, stale->path, LA_RUNNING);
			/* Looked at again as it becomes long-running. */
			summary_due(&ctx->summary->guard_due_at,
						stale->step_started + (int64) (threshold_s * USECS_PER_SEC));
		}
		return;
	}
	/* Anything else: the registry's status decides; "none"/"unknown" mean not running. */
	if (!act_on_status(ctx, a->registry_status, &note))
	{
		if (note.detail == NULL)
			note.detail = "the step is not running on the registry";
		abort_step(ctx, &note);
	}
}

/* An error aborts the repository, as in the enqueuer. */
static void
guard_abort_after_error(void *arg)
{
	GuardContext *ctx = arg;

	abort_after_error(ctx->stale->id, ctx->error, CAUSE_GUARD, false, ctx->settings,
					  ctx->summary);
}

/* The registry's status of every stale repository, asked all at once. */
static void
ask_statuses(StaleRepository *stale, int count, MemoryContext cycle_memory)
{
	MemoryContext spi_memory = MemoryContextSwitchTo(cycle_memory);
	const char **paths = palloc(sizeof(char *) * count);
	RegistryAnswer *answers = palloc(sizeof(RegistryAnswer) * count);

	for (int i = 0; i < count; i++)
		paths[i] = stale[i].path;
	registry_status_many(paths, count, answers);
	for (int i = 0; i < count; i++)
		stale[i].status = answers[i];
	MemoryContextSwitchTo(spi_memory);
}

/*
 * When the oldest step in process that is not stale yet becomes stale; 0
 * when there is none. (A stale step left running is due again when it
 * becomes long-running, see guard_one.)
 */
static TimestampTz
next_stale_at(const MigrationSettings *s)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TIMESTAMPTZOID};
	int64		max_step = (int64) (s->max_step_duration_s * USECS_PER_SEC);
	Datum		values[1] = {TimestampTzGetDatum(GetCurrentTimestamp() - max_step)};
	bool		isnull;
	Datum		oldest;

	if (plan == NULL)
		spi_cached_plan(&plan,
						psprintf("SELECT least("
								 " (SELECT min(pre_import_started_at) FROM registry_migration.repositories"
								 "   WHERE state = %s AND pre_import_started_at >= $1),"
								 " (SELECT min(import_started_at) FROM registry_migration.repositories"
								 "   WHERE state = %s AND import_started_at >= $1))",
								 state_sql_literal(MS_PRE_IMPORTING),
								 state_sql_literal(MS_IMPORTING)),
						1, types);
	/* Not read-only: the final imports this cycle started count too. */
	spi_run(plan, values, NULL, false, 1, SPI_OK_SELECT);
	oldest = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(oldest) + max_step;
}

void
guard_cycle_body(CycleSummary *summary)
{
	MemoryContext cycle_memory = CurrentMemoryContext;
	MigrationSettings settings;
	StaleRepository *stale;
	int			count;

	SPI_connect();
	settings = settings_load();
	stale = select_stale(&settings, &count, cycle_memory);
	summary->stale = count;
	if (count > 0)
	{
		registry_require_url();
		cycle_commit_point();
		ask_statuses(stale, count, cycle_memory);
		for (int i = 0; i < count; i++)
		{
			GuardContext ctx = {.settings = &settings, .summary = summary, .stale = &stale[i]};

			cycle_commit_point();
			if (handle_repository(guard_one, guard_abort_after_error, &ctx, &ctx.error,
								  summary, stale[i].path) && ctx.final_import_due)
			{
				cycle_commit_point();
				(void) handle_repository(guard_final_import, guard_abort_after_error, &ctx,
										 &ctx.error, summary, stale[i].path);
			}
		}
	}
	/* Then the failure notifications held for confirmation (steps not yet stale). */
	failure_reports_confirm(&settings, summary, cycle_memory);
	summary_due(&summary->guard_due_at, next_stale_at(&settings));
	SPI_finish();
}
