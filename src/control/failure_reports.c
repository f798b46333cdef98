/*
 * failure_reports.c — holding young failure notifications, and the guard's
 * confirmation of them with the registry.
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/timestamp.h"

#include "control/changes.h"
#include "control/cycle.h"
#include "control/failure_reports.h"
#include "control/reconcile.h"
#include "registry/registry_client.h"
#include "store/commit_signal.h"
#include "store/event_log.h"
#include "store/spi_util.h"
#include "store/state_sql.h"

/* A confirmation records what it finds; it never starts the final import. */
static const ReconcileLists confirmation_lists = {
	.marked = SL_MARKED,
	.list_pre_import_finish = true,
};

/* A held report, as the guard found it, with the registry's answer. */
typedef struct HeldReport
{
	int64		id;
	MigrationState state;
	TimestampTz step_started;
	RegistryStatus notified;	/* what the notification said */
	const char *notified_text;
} HeldReport;

typedef struct ConfirmContext
{
	const MigrationSettings *settings;
	CycleSummary *summary;
	const HeldReport *held;
	const char *path;
	const RegistryAnswer *status;
	Repository	repo;			/* the locked row */
	const char *error;			/* the error that ended confirm_one, if any */
} ConfirmContext;

/* When the repository entered its current state in process; 0 otherwise. */
static TimestampTz
step_start(const RepositoryRow *row)
{
	const OptionalTime *t = row->state == MS_PRE_IMPORTING ? &row->pre_import_started_at
		: row->state == MS_PRE_IMPORT_DONE ? &row->pre_import_done_at
		: row->state == MS_IMPORTING ? &row->import_started_at : NULL;

	return t != NULL && t->set ? t->at : 0;
}

bool
failure_report_hold(const Repository *repo, const char *status_text)
{
	TimestampTz started = step_start(&repo->row);
	TimestampTz now = GetCurrentTimestamp();
	EventNote	note = {.cause = CAUSE_NOTIFICATION, .registry_status = status_text};

	/* A step dated in the future (written by hand) is not trusted to be young. */
	if (started == 0 || now < started ||
		now - started >= (int64) FAILURE_CONFIRM_WINDOW_S * USECS_PER_SEC)
		return false;
	note.detail = psprintf("reported %.1f s after the step started: the registry's status is "
						   "asked before the repository is aborted (the report may concern an "
						   "earlier attempt)", (double) (now - started) / USECS_PER_SEC);
	event_log_no_change(repo->id, repo->path, repo->row.state, FAILURE_PENDING_EVENT, &note);
	commit_signal_raise_guard();
	return true;
}

/*
 * The held reports still standing, oldest first: the latest report of
 * each repository that no dismissal followed, whose repository is still at
 * the step it was reported for (the step started before the report), and
 * whose step is not stale. Found through the partial index on the reports.
 */
static const char *
held_reports_query(void)
{
	return psprintf("SELECT r.id, r.path, r.state::text, s.started, e.registry_status"
					"  FROM registry_migration.events e"
					"  JOIN registry_migration.repositories r ON r.id = e.repository_id"
					"  CROSS JOIN LATERAL (SELECT CASE r.state"
					"      WHEN %s THEN r.pre_import_started_at"
					"      WHEN %s THEN r.pre_import_done_at"
					"      WHEN %s THEN r.import_started_at END AS started) s"
					" WHERE e.event = '" FAILURE_PENDING_EVENT "' AND e.at > $1"
					"   AND s.started > $1 AND s.started <= e.at"
					"   AND NOT EXISTS (SELECT FROM registry_migration.events l"
					"        WHERE l.repository_id = e.repository_id AND l.id > e.id"
					"          AND l.event IN ('" FAILURE_PENDING_EVENT "', '"
					FAILURE_DISMISSED_EVENT "'))"
					" ORDER BY e.id LIMIT $2",
					state_sql_literal(MS_PRE_IMPORTING), state_sql_literal(MS_PRE_IMPORT_DONE),
					state_sql_literal(MS_IMPORTING));
}

/* Select the held reports into cycle memory; *paths gets their paths. */
static HeldReport *
select_held(const MigrationSettings *s, int *count, const char ***paths,
			MemoryContext cycle_memory)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2];
	MemoryContext spi_memory;
	HeldReport *held;

	values[0] = TimestampTzGetDatum(GetCurrentTimestamp() -
									(int64) (s->max_step_duration_s * USECS_PER_SEC));
	values[1] = Int32GetDatum(s->guard_batch_size);
	if (plan == NULL)
		spi_cached_plan(&plan, held_reports_query(), 2, types);
	/* Not read-only: a fresh snapshot sees what this cycle changed already. */
	spi_run(plan, values, NULL, false, 0, SPI_OK_SELECT);
	*count = (int) SPI_processed;
	spi_memory = MemoryContextSwitchTo(cycle_memory);
	held = palloc0(sizeof(HeldReport) * Max(*count, 1));
	*paths = palloc0(sizeof(char *) * Max(*count, 1));
	for (int i = 0; i < *count; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		held[i].id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		(*paths)[i] = SPI_getvalue(tuple, desc, 2);
		migration_state_from_name(SPI_getvalue(tuple, desc, 3), &held[i].state);
		held[i].step_started = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 4, &isnull));
		held[i].notified_text = SPI_getvalue(tuple, desc, 5);
		held[i].notified = registry_status_parse(held[i].notified_text);
	}
	MemoryContextSwitchTo(spi_memory);
	return held;
}

/* The registry reports the step running, or done as recorded: the report was about an earlier attempt. */
static void
dismiss(ConfirmContext *ctx, const EventNote *note)
{
	EventNote	dismissal = *note;

	dismissal.detail = psprintf("the registry's status does not confirm the %s notification: "
								"it was about an earlier attempt", ctx->held->notified_text);
	event_log_no_change(ctx->repo.id, ctx->repo.path, ctx->repo.row.state,
						FAILURE_DISMISSED_EVENT, &dismissal);
	summary_left_alone(ctx->summary, ctx->path, LA_FAILURE_DISMISSED);
}

/* The registry agrees: a pre_import_done repository whose pre-import is complete. */
static bool
consistent_pre_import_done(const ConfirmContext *ctx)
{
	return ctx->repo.row.state == MS_PRE_IMPORT_DONE &&
		registry_status_parse(ctx->status->registry_status) == RS_PRE_IMPORT_COMPLETE;
}

/* One held report, in its own subtransaction. */
static void
confirm_one(void *arg)
{
	ConfirmContext *ctx = arg;
	const RegistryAnswer *a = ctx->status;
	EventNote	note = {.cause = CAUSE_GUARD, .http_status = (int) a->http_status,
	.registry_status = a->registry_status};
	RetryDecision decision;

	if (!read_unchanged(ctx->held->id, ctx->path, ctx->held->state, NULL, &ctx->repo,
						ctx->summary))
		return;
	if (step_start(&ctx->repo.row) != ctx->held->step_started)
	{
		summary_state_changed(ctx->summary, ctx->path);
		return;
	}
	/* No word from the registry: held until the next guard cycle. */
	if (a->answer == ANSWER_UNAVAILABLE)
	{
		summary_left_alone(ctx->summary, ctx->path, LA_CONFIRMATION_PENDING);
		return;
	}
	if (consistent_pre_import_done(ctx))
	{
		dismiss(ctx, &note);
		return;
	}
	note.detail = psprintf("the registry's status, asked to confirm a %s notification",
						   ctx->held->notified_text);
	if (reconcile(&ctx->repo, a->registry_status, &note, ctx->settings, ctx->summary,
				  &confirmation_lists, &decision) != NOT_RECONCILED)
		return;
	if (decision == RD_NONE)
	{
		dismiss(ctx, &note);
		return;
	}
	/* Unknown to the registry, or an unusable status: nothing contradicts the notification. */
	note.detail = psprintf("the registry's status (%s) does not contradict the %s notification",
						   a->answer == ANSWER_NOT_FOUND ? "404: unknown repository"
						   : a->problem ? a->problem : a->registry_status ? a->registry_status
						   : "unusable", ctx->held->notified_text);
	abort_listed(&ctx->repo, registry_status_is_cancel(ctx->held->notified), &note, ctx->settings,
				 ctx->summary);
}

/* An error aborts the repository, as everywhere in the guard. */
static void
confirm_abort_after_error(void *arg)
{
	ConfirmContext *ctx = arg;

	abort_after_error(ctx->held->id, ctx->error, CAUSE_GUARD, false, ctx->settings,
					  ctx->summary);
}

void
failure_reports_confirm(const MigrationSettings *settings, CycleSummary *summary,
						MemoryContext cycle_memory)
{
	const char **paths;
	HeldReport *held;
	RegistryAnswer *answers;
	MemoryContext spi_memory;
	int			count;

	held = select_held(settings, &count, &paths, cycle_memory);
	if (count == 0)
		return;
	registry_require_url();
	cycle_commit_point();
	/* One status request per report, all at once, no row locked meanwhile. */
	spi_memory = MemoryContextSwitchTo(cycle_memory);
	answers = palloc(sizeof(RegistryAnswer) * count);
	registry_status_many(paths, count, answers);
	MemoryContextSwitchTo(spi_memory);
	for (int i = 0; i < count; i++)
	{
		ConfirmContext ctx = {.settings = settings, .summary = summary, .held = &held[i],
		.path = paths[i], .status = &answers[i]};

		cycle_commit_point();
		(void) handle_repository(confirm_one, confirm_abort_after_error, &ctx, &ctx.error,
								 summary, paths[i]);
	}
}
