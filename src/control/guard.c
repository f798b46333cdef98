/*
 * guard.c — the guard cycle (SPEC §5): looks at repositories whose step has
 * lasted longer than max_step_duration, asks the registry what it is doing
 * for all of them at once, and cancels, aborts or records what it finds.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "store/backoff.h"
#include "control/cycle.h"
#include "control/guard.h"
#include "core/decision.h"
#include "store/event_log.h"
#include "registry/registry_client.h"
#include "store/settings.h"
#include "store/spi_util.h"
#include "control/starts.h"
#include "store/state_machine.h"
#include "control/summary.h"

PG_FUNCTION_INFO_V1(rm_run_guard);

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
	Repository	repo;			/* the locked row */
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
	spi_cached_plan(&plan,
					"SELECT id, path, state::text, started FROM ("
					" (SELECT id, path, state, pre_import_started_at AS started"
					"   FROM registry_migration.repositories"
					"  WHERE state = 'pre_importing' AND pre_import_started_at < $1"
					"  ORDER BY pre_import_started_at, id LIMIT $2)"
					" UNION ALL"
					" (SELECT id, path, state, import_started_at"
					"   FROM registry_migration.repositories"
					"  WHERE state = 'importing' AND import_started_at < $1"
					"  ORDER BY import_started_at, id LIMIT $2)) AS s"
					" ORDER BY started, id LIMIT $2",
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
 * The long-running threshold of a step, in seconds (SPEC §5 step 4): the
 * tag count may raise a pre-import's; it is asked for only once the step is
 * older than list_after_s, and only as far as needed to cover age_s.
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
list_after_abort(GuardContext *ctx)
{
	if (ctx->repo.row.state == MS_IMPORT_SKIPPED)
		summary_add(ctx->summary, SL_SKIPPED, ctx->repo.path, NULL);
	else
		summary_add(ctx->summary, SL_ABORTED, ctx->repo.path, NULL);
}

static void
abort_step(GuardContext *ctx, bool canceled_by_registry, const EventNote *note)
{
	TransitionRequest request = {.event = EV_ABORT, .canceled_by_registry = canceled_by_registry};

	repository_apply_or_error(&ctx->repo, &request, note);
	list_after_abort(ctx);
}

static void
apply_listed(GuardContext *ctx, const TransitionRequest *request, const EventNote *note,
			 SummaryList list)
{
	repository_apply_or_error(&ctx->repo, request, note);
	summary_add(ctx->summary, list, ctx->repo.path, NULL);
}

/* The finished pre-import is recorded; its final import follows while allowed. */
static void
finish_pre_import_then_start(GuardContext *ctx, const EventNote *note)
{
	TransitionRequest finish = {.event = EV_FINISH_PRE_IMPORT};
	TimestampTz until;
	StartResult started;

	apply_listed(ctx, &finish, note, SL_FINISHED);
	if (!ctx->settings->enabled || backoff_pending(&until))
		return;
	started = start_step(&ctx->repo, true, ctx->settings, CAUSE_GUARD, SL_FINAL_IMPORTS);
	if (started.listed)
		summary_add(ctx->summary, started.list, ctx->repo.path, started.reason);
}

/*
 * Act on retry_decision for the registry's status. Returns false when the
 * decision is none or unknown, which the caller treats its own way.
 */
static bool
act_on_decision(GuardContext *ctx, const char *registry_status, const EventNote *note)
{
	RegistryStatus status = registry_status_parse(registry_status);
	RetryDecision decision = decide_retry(ctx->repo.row.state, status,
										  ctx->repo.row.retries_count,
										  ctx->settings->max_retries);
	TransitionRequest request = {0};

	switch (decision)
	{
		case RD_FINISH_IMPORT:
			request.event = EV_FINISH_IMPORT;
			apply_listed(ctx, &request, note, SL_FINISHED);
			return true;
		case RD_FINISH_IMPORT_NATIVE:
			request = (TransitionRequest) {.event = EV_FINISH_IMPORT, .has_reason = true,
			.reason = SR_NATIVE_IMPORT};
			apply_listed(ctx, &request, note, SL_FINISHED);
			return true;
		case RD_MARK_PRE_IMPORTING:
		case RD_MARK_IMPORTING:
			request.event = decision == RD_MARK_IMPORTING ? EV_MARK_IMPORTING : EV_MARK_PRE_IMPORTING;
			apply_listed(ctx, &request, note, SL_MARKED);
			return true;
		case RD_START_IMPORT:
			finish_pre_import_then_start(ctx, note);
			return true;
		case RD_ABORT:
			abort_step(ctx, status == RS_PRE_IMPORT_CANCELED || status == RS_IMPORT_CANCELED, note);
			return true;
		case RD_SKIP:
			request = (TransitionRequest) {.event = EV_SKIP, .has_reason = true,
			.reason = SR_TOO_MANY_RETRIES};
			apply_listed(ctx, &request, note, SL_SKIPPED);
			return true;
		case RD_NONE:
		case RD_UNKNOWN:
		case RD_RETRY_PRE_IMPORT:
		case RD_RETRY_IMPORT:
			break;
	}
	return false;
}

/* A confirmed long-running step: cancel it on the registry (SPEC §5 step 3). */
static void
cancel_long_running(GuardContext *ctx)
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

			apply_listed(ctx, &skip, &note, SL_SKIPPED);
		}
		else
			abort_step(ctx, false, &note);
		return;
	}

	/* Refused (or no usable answer): reconcile from the registry's real status. */
	status = registry_call(CALL_STATUS, ctx->repo.path);
	note.http_status = (int) status.http_status;
	note.registry_status = status.registry_status;
	note.detail = psprintf("cancel not accepted (%s)",
						   cancel.problem ? cancel.problem : answer_class_name(cancel.answer));
	if (status.answer == ANSWER_UNAVAILABLE || !act_on_decision(ctx, status.registry_status, &note))
		summary_add(ctx->summary, SL_LEFT_ALONE, ctx->repo.path, NULL);
}

static bool
confirms_running(const StaleRepository *stale)
{
	RegistryStatus status = registry_status_parse(stale->status.registry_status);

	return (stale->state == MS_PRE_IMPORTING && status == RS_PRE_IMPORT_IN_PROGRESS) ||
		(stale->state == MS_IMPORTING && status == RS_IMPORT_IN_PROGRESS);
}

static TimestampTz
current_step_start(const Repository *repo)
{
	const OptionalTime *t = repo->row.state == MS_PRE_IMPORTING ? &repo->row.pre_import_started_at
		: &repo->row.import_started_at;

	return t->set ? t->at : 0;
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

	if (!repository_lock_by_id(stale->id, &ctx->repo) || ctx->repo.row.state != stale->state ||
		current_step_start(&ctx->repo) != stale->step_started)
	{
		summary_add(ctx->summary, SL_ERRORS, stale->path, "state changed");
		return;
	}
	age_s = age_seconds(stale->step_started);

	if (a->answer == ANSWER_UNAVAILABLE)
	{
		/* A registry that cannot answer must not hold a slot forever. */
		threshold_s = step_threshold(ctx, age_s, 2 * ctx->settings->pre_import_timeout_s);
		if (age_s > 2 * threshold_s)
		{
			note.detail = psprintf("registry unavailable for more than twice the long-running threshold (%s)",
								   a->problem);
			abort_step(ctx, false, &note);
		}
		else
			summary_add(ctx->summary, SL_LEFT_ALONE, stale->path, NULL);
		return;
	}
	if (confirms_running(stale))
	{
		threshold_s = step_threshold(ctx, age_s, ctx->settings->pre_import_timeout_s);
		if (age_s > threshold_s)
			cancel_long_running(ctx);
		else
			summary_add(ctx->summary, SL_LEFT_ALONE, stale->path, NULL);
		return;
	}
	/* Anything else: the registry's status decides; "none"/"unknown" mean not running. */
	if (!act_on_decision(ctx, a->registry_status, &note))
	{
		if (note.detail == NULL)
			note.detail = "the step is not running on the registry";
		abort_step(ctx, false, &note);
	}
}

/* SPEC §12.8: an error aborts the repository, like the enqueuer's §6 step 4. */
static void
abort_after_error(void *arg)
{
	GuardContext *ctx = arg;
	EventNote	note = {.cause = CAUSE_GUARD, .detail = ctx->error};

	if (!repository_lock_by_id(ctx->stale->id, &ctx->repo) ||
		!event_allowed(EV_ABORT, ctx->repo.row.state))
		return;
	abort_step(ctx, false, &note);
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

void
guard_cycle_body(CycleSummary *summary)
{
	MemoryContext cycle_memory = CurrentMemoryContext;
	MigrationSettings settings;
	StaleRepository *stale;
	int			count;

	SPI_connect();
	event_log_purge(1000);
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
			(void) handle_repository(guard_one, abort_after_error, &ctx, &ctx.error,
									 summary, stale[i].path);
		}
	}
	SPI_finish();
}

Datum
rm_run_guard(PG_FUNCTION_ARGS)
{
	CycleSummary summary;

	run_cycle(CYCLE_GUARD, guard_cycle_body, &summary);
	PG_RETURN_DATUM(summary_to_jsonb(&summary));
}
