/*
 * enqueuer.c — the enqueue cycle (SPEC §6): final imports first, then new
 * work one repository per round while below capacity.
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "store/backoff.h"
#include "control/cycle.h"
#include "core/decision.h"
#include "control/enqueuer.h"
#include "store/event_log.h"
#include "store/spi_util.h"
#include "control/starts.h"

PG_FUNCTION_INFO_V1(rm_run_enqueuer);

/* What one round is about. */
typedef enum Candidate
{
	CANDIDATE_FINAL_IMPORT,
	CANDIDATE_ABORTED,
	CANDIDATE_NEW
} Candidate;

typedef struct EnqueueContext
{
	const MigrationSettings *settings;
	CycleSummary *summary;
	Candidate	candidate;
	int64		id;
	char	   *path;
	HandleOutcome outcome;
	const char *error;			/* the error that ended the handling, if any */
} EnqueueContext;

/* Repositories handled in this cycle: each at most once (SPEC §6 step 3). */
typedef struct Handled
{
	MemoryContext memory;		/* kept across the cycle's commit points */
	int64	   *ids;
	int			count;
	int			size;
} Handled;

static void
remember(Handled *handled, int64 id)
{
	if (handled->count == handled->size)
	{
		handled->size = Max(16, handled->size * 2);
		handled->ids = handled->ids ? repalloc(handled->ids, sizeof(int64) * handled->size)
			: MemoryContextAlloc(handled->memory, sizeof(int64) * handled->size);
	}
	handled->ids[handled->count++] = id;
}

static Datum
handled_array(const Handled *handled)
{
	Datum	   *elements = palloc(sizeof(Datum) * Max(handled->count, 1));

	for (int i = 0; i < handled->count; i++)
		elements[i] = Int64GetDatum(handled->ids[i]);
	return PointerGetDatum(construct_array(elements, handled->count, INT8OID, 8, true, TYPALIGN_DOUBLE));
}

static void
list_start(CycleSummary *summary, const char *path, const StartResult *r)
{
	if (r->listed)
		summary_add(summary, r->list, path, r->reason);
}

static HandleOutcome
outcome_of(const StartResult *r)
{
	if (r->answer == ANSWER_TOO_MANY_IMPORTS)
		return HANDLED_TOO_MANY_IMPORTS;
	if (r->answer == ANSWER_UNAVAILABLE)
		return HANDLED_UNAVAILABLE;
	return HANDLED;
}

static void
apply_listed(Repository *repo, const TransitionRequest *request, const EventNote *note,
			 CycleSummary *summary, SummaryList list, const char *reason)
{
	repository_apply_or_error(repo, request, note);
	summary_add(summary, list, repo->path, reason);
}

HandleOutcome
retry_aborted(Repository *repo, const RegistryAnswer *status, const MigrationSettings *s,
			  EventCause cause, CycleSummary *summary)
{
	RegistryStatus registry_status = registry_status_parse(status->registry_status);
	RetryDecision decision = decide_retry(repo->row.state, registry_status,
										  repo->row.retries_count, s->max_retries);
	EventNote	note = {.cause = cause, .http_status = (int) status->http_status,
	.registry_status = status->registry_status};
	TransitionRequest request = {0};
	StartResult r;
	bool		final;

	switch (decision)
	{
		case RD_RETRY_PRE_IMPORT:
		case RD_RETRY_IMPORT:
			r = start_step(repo, decision == RD_RETRY_IMPORT, s, cause, SL_RETRIED);
			list_start(summary, repo->path, &r);
			return outcome_of(&r);
		case RD_START_IMPORT:
			/* The pre-import finished after all: record it, then the final import. */
			request.event = EV_FINISH_PRE_IMPORT;
			repository_apply_or_error(repo, &request, &note);
			r = start_step(repo, true, s, cause, SL_RETRIED);
			list_start(summary, repo->path, &r);
			return outcome_of(&r);
		case RD_FINISH_IMPORT:
		case RD_FINISH_IMPORT_NATIVE:
			request = (TransitionRequest) {.event = EV_FINISH_IMPORT,
				.has_reason = decision == RD_FINISH_IMPORT_NATIVE,
			.reason = SR_NATIVE_IMPORT};
			apply_listed(repo, &request, &note, summary, SL_FINISHED,
						 request.has_reason ? "native_import" : NULL);
			return HANDLED;
		case RD_MARK_PRE_IMPORTING:
		case RD_MARK_IMPORTING:
			request.event = decision == RD_MARK_IMPORTING ? EV_MARK_IMPORTING : EV_MARK_PRE_IMPORTING;
			apply_listed(repo, &request, &note, summary, SL_RETRIED, NULL);
			return HANDLED;
		case RD_SKIP:
		case RD_NONE:
		case RD_UNKNOWN:
		case RD_ABORT:
			break;
	}
	/* skip, or an unknown status: retry the step it was at, or skip at the limit. */
	if (repo->row.retries_count >= s->max_retries)
	{
		request = (TransitionRequest) {.event = EV_SKIP, .has_reason = true,
		.reason = SR_TOO_MANY_RETRIES};
		apply_listed(repo, &request, &note, summary, SL_SKIPPED, "too_many_retries");
		return HANDLED;
	}
	final = repo->row.pre_import_done_at.set;
	r = start_step(repo, final, s, cause, SL_RETRIED);
	list_start(summary, repo->path, &r);
	return outcome_of(&r);
}

/* Lock the candidate and check it is still in the state it was chosen in. */
static bool
lock_candidate(EnqueueContext *ctx, MigrationState expected, Repository *repo)
{
	if (repository_lock_by_id(ctx->id, repo) && repo->row.state == expected)
		return true;
	summary_add(ctx->summary, SL_ERRORS, ctx->path, "state changed");
	return false;
}

static void
handle_final_import(EnqueueContext *ctx)
{
	Repository	repo;
	StartResult r;

	if (!lock_candidate(ctx, MS_PRE_IMPORT_DONE, &repo))
		return;
	r = start_step(&repo, true, ctx->settings, CAUSE_ENQUEUER, SL_FINAL_IMPORTS);
	list_start(ctx->summary, repo.path, &r);
	ctx->outcome = outcome_of(&r);
}

static void
handle_aborted(EnqueueContext *ctx)
{
	RegistryAnswer status = registry_call(CALL_STATUS, ctx->path);
	Repository	repo;

	if (status.answer == ANSWER_UNAVAILABLE)
	{
		ctx->outcome = HANDLED_UNAVAILABLE;
		return;
	}
	if (!lock_candidate(ctx, MS_IMPORT_ABORTED, &repo))
		return;
	ctx->outcome = retry_aborted(&repo, &status, ctx->settings, CAUSE_ENQUEUER, ctx->summary);
}

static void
handle_new(EnqueueContext *ctx)
{
	const MigrationSettings *s = ctx->settings;
	RegistryAnswer tags = {.answer = ANSWER_OK, .tags = 0};
	Repository	repo;
	StartResult r;

	if (s->max_tags_count > 0)
	{
		/* No more tags than needed to know the repository has too many. */
		tags = registry_count_tags(ctx->path, (int64) s->max_tags_count + 1);
		if (tags.answer == ANSWER_UNAVAILABLE)
		{
			ctx->outcome = HANDLED_UNAVAILABLE;
			return;
		}
		if (tags.answer == ANSWER_NOT_FOUND)
			tags.tags = 0;
		else if (tags.answer != ANSWER_OK)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("unusable answer to the tag list: %s", tags.problem)));
	}
	if (!lock_candidate(ctx, MS_DEFAULT, &repo))
		return;
	if (tags.tags > s->max_tags_count)
	{
		EventNote	note = {.cause = CAUSE_ENQUEUER,
		.detail = psprintf("more than %d tags", s->max_tags_count)};
		TransitionRequest skip = {.event = EV_SKIP, .has_reason = true, .reason = SR_TOO_MANY_TAGS};

		apply_listed(&repo, &skip, &note, ctx->summary, SL_SKIPPED, "too_many_tags");
		return;
	}
	r = start_step(&repo, false, s, CAUSE_ENQUEUER, SL_STARTED);
	list_start(ctx->summary, repo.path, &r);
	ctx->outcome = outcome_of(&r);
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

/* SPEC §6 step 4: the repository is aborted, or an aborted one fails its retry. */
static void
abort_after_error(void *arg)
{
	EnqueueContext *ctx = arg;
	EventNote	note = {.cause = CAUSE_ENQUEUER, .detail = ctx->error};
	Repository	repo;
	TransitionRequest request = {.event = EV_ABORT};

	if (!repository_lock_by_id(ctx->id, &repo))
		return;
	if (repo.row.state == MS_IMPORT_ABORTED)
		request.event = EV_RETRY_FAILED;
	if (!repository_apply(&repo, &request, &note).allowed)
		return;
	if (repo.row.state == MS_IMPORT_SKIPPED)
		summary_add(ctx->summary, SL_SKIPPED, repo.path, skip_reason_name(repo.row.skipped_reason));
	else
		summary_add(ctx->summary, SL_ABORTED, repo.path, NULL);
}

/* Handle one candidate in isolation; an error aborts only that repository. */
static HandleOutcome
handle_isolated(EnqueueContext *ctx)
{
	bool		ok;

	/* A missing registry URL is the operator's to fix, not this repository's fault. */
	registry_require_url();
	ok = handle_repository(handle_candidate, abort_after_error, ctx, &ctx->error,
						   ctx->summary, ctx->path);
	cycle_commit_point();
	return ok ? ctx->outcome : HANDLED;
}

static const char *
stop_reason(HandleOutcome outcome)
{
	if (outcome == HANDLED_TOO_MANY_IMPORTS)
		return "too_many_imports";
	if (outcome == HANDLED_UNAVAILABLE)
		return "registry_unavailable";
	return NULL;
}

static int64
count_in_process(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;

	spi_cached_plan(&plan,
					"SELECT count(*) FROM registry_migration.repositories"
					" WHERE state IN ('pre_importing', 'pre_import_done', 'importing')",
					0, NULL);
	spi_run(plan, NULL, NULL, false, 1, SPI_OK_SELECT);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* True when a step finished less than enqueue_waiting_time ago. */
static bool
waiting(const MigrationSettings *s)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		values[1];

	if (s->enqueue_waiting_time_s <= 0)
		return false;
	values[0] = TimestampTzGetDatum(GetCurrentTimestamp() -
									(int64) (s->enqueue_waiting_time_s * USECS_PER_SEC));
	/* One index-backed max per state; greatest() ignores NULLs (SPEC §11.5). */
	spi_cached_plan(&plan,
					"SELECT greatest("
					" (SELECT max(pre_import_done_at) FROM registry_migration.repositories"
					"   WHERE state = 'pre_import_done'),"
					" (SELECT max(import_done_at) FROM registry_migration.repositories"
					"   WHERE state = 'import_done'),"
					" (SELECT max(aborted_at) FROM registry_migration.repositories"
					"   WHERE state = 'import_aborted'),"
					" (SELECT max(skipped_at) FROM registry_migration.repositories"
					"   WHERE state = 'import_skipped')) > $1",
					1, types);
	spi_run(plan, values, NULL, false, 1, SPI_OK_SELECT);
	{
		bool		isnull;
		Datum		recent = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		return !isnull && DatumGetBool(recent);
	}
}

/*
 * The deny list as one array computed once per query (an init plan), so the
 * candidate is found by walking its partial index in order and stopping at
 * the first allowed row, whatever the planner knows of the deny list.
 */
#define NOT_DENIED \
	"NOT (r.root_namespace = ANY (ARRAY(SELECT root_namespace" \
	"                                   FROM registry_migration.denied_namespaces)))"

/* The next candidate of a kind not handled yet; false when there is none. */
static bool
next_candidate(EnqueueContext *ctx, Candidate kind, const Handled *handled)
{
	static SPIPlanPtr plans[3];
	static const char *const queries[3] = {
		[CANDIDATE_FINAL_IMPORT] =
		"SELECT id, path FROM registry_migration.repositories"
		" WHERE state = 'pre_import_done' AND id <> ALL($1)"
		" ORDER BY pre_import_done_at, id LIMIT 1",
		[CANDIDATE_ABORTED] =
		"SELECT id, path FROM registry_migration.repositories r"
		" WHERE state = 'import_aborted' AND id <> ALL($1)"
		"   AND " NOT_DENIED
		" ORDER BY aborted_at, id LIMIT 1",
		[CANDIDATE_NEW] =
		"SELECT id, path FROM registry_migration.repositories r"
		" WHERE state = 'default' AND id <> ALL($1)"
		"   AND ($2::timestamptz IS NULL OR created_at < $2)"
		"   AND ($3::text[] IS NULL OR coalesce(plan, 'free') = ANY ($3))"
		"   AND " NOT_DENIED
		" ORDER BY created_at, id LIMIT 1",
	};
	Oid			types[3] = {INT8ARRAYOID, TIMESTAMPTZOID, TEXTARRAYOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	const MigrationSettings *s = ctx->settings;
	bool		isnull;

	values[0] = handled_array(handled);
	values[1] = TimestampTzGetDatum(s->created_before);
	nulls[1] = s->has_created_before ? ' ' : 'n';
	values[2] = s->target_plans;
	nulls[2] = s->has_target_plans ? ' ' : 'n';
	spi_cached_plan(&plans[kind], queries[kind], kind == CANDIDATE_NEW ? 3 : 1, types);
	spi_run(plans[kind], values, nulls, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	ctx->candidate = kind;
	ctx->id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	ctx->path = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	return true;
}

/* Step 2: every finished pre-import gets its final import, outside capacity. */
static const char *
final_imports(EnqueueContext *ctx, Handled *handled)
{
	while (next_candidate(ctx, CANDIDATE_FINAL_IMPORT, handled))
	{
		const char *stop;

		remember(handled, ctx->id);
		stop = stop_reason(handle_isolated(ctx));
		if (stop)
			return stop;
	}
	return NULL;
}

/* Step 3: new work, one repository per round, while below capacity. */
static const char *
new_work(EnqueueContext *ctx, Handled *handled)
{
	for (;;)
	{
		const char *stop;

		if (count_in_process() >= ctx->settings->capacity)
			return "at_capacity";
		if (!next_candidate(ctx, CANDIDATE_ABORTED, handled) &&
			!next_candidate(ctx, CANDIDATE_NEW, handled))
			return "nothing_to_do";
		remember(handled, ctx->id);
		stop = stop_reason(handle_isolated(ctx));
		if (stop)
			return stop;
	}
}

void
enqueue_cycle_body(CycleSummary *summary)
{
	MigrationSettings settings;
	EnqueueContext ctx = {.settings = &settings, .summary = summary};
	Handled		handled = {.memory = CurrentMemoryContext};
	const char *gate = NULL;
	const char *stop;

	SPI_connect();
	event_log_purge(1000);
	settings = settings_load();
	if (!settings.enabled)
		summary->stopped = "disabled";
	else if (backoff_pending(&summary->retry_after_until))
	{
		summary->has_retry_after = true;
		summary->stopped = "retry_after";
	}
	else
	{
		/* The gates are evaluated before the final imports (SPEC §12.16). */
		if (count_in_process() >= settings.capacity)
			gate = "at_capacity";
		else if (waiting(&settings))
			gate = "waiting_time";
		stop = final_imports(&ctx, &handled);
		summary->stopped = stop ? stop : gate ? gate : new_work(&ctx, &handled);
	}
	if (strcmp(summary->stopped, "too_many_imports") == 0 && backoff_pending(&summary->retry_after_until))
		summary->has_retry_after = true;
	SPI_finish();
}

Datum
rm_run_enqueuer(PG_FUNCTION_ARGS)
{
	CycleSummary summary;

	run_cycle(CYCLE_ENQUEUER, enqueue_cycle_body, &summary);
	PG_RETURN_DATUM(summary_to_jsonb(&summary));
}
