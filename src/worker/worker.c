/*
 * worker.c — the background worker: runs the enqueuer every
 * enqueue_interval (and at once when a committed change freed a slot), the
 * guard every guard_interval, and each as soon as it has work due (a step
 * becoming stale, a repository no longer held back), in
 * registry_migration.database.
 *
 * Connecting (worker_connect.c), checking the role (worker_grants.c) and
 * sleeping (worker_wait.c) live beside it; this file is the main loop and
 * what one cycle does around the control layer's cycle body.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "control/cycle.h"
#include "control/enqueuer.h"
#include "control/guard.h"
#include "control/summary.h"
#include "guc.h"
#include "registry/registry_client.h"
#include "worker/summary_fit.h"
#include "worker/worker.h"
#include "worker/worker_connect.h"
#include "worker/worker_grants.h"
#include "worker/worker_shared.h"
#include "worker/worker_wait.h"

PGDLLEXPORT void registry_migration_worker_main(Datum arg);

void
worker_register(void)
{
	BackgroundWorker worker = {0};

	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* Started on a standby too, where it idles until promotion. */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = WORKER_RESTART_S;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "registry_migration");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "registry_migration_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "registry_migration worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "registry_migration worker");
	RegisterBackgroundWorker(&worker);
}

/* Why the worker should not run cycles now, or NULL when it should. */
static const char *
reason_to_idle(void)
{
	static char refused[WORKER_ACTIVITY_LEN];
	bool		installed;
	bool		superuser_role;

	if (!rm_worker_enabled)
		return "idle: registry_migration.worker_enabled is off";
	if (RecoveryInProgress())
		return "idle: the server is in recovery";
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("registry_migration", true));
	superuser_role = worker_role_is_superuser();
	CommitTransactionCommand();
	if (superuser_role)
	{
		snprintf(refused, sizeof(refused), "idle: role \"%s\" is a superuser", rm_worker_role);
		return refused;
	}
	return installed ? NULL : "idle: the extension is not installed in this database";
}

static void
record_cycle(CycleKind kind, TimestampTz started, const CycleSummary *summary)
{
	char		json[WORKER_SUMMARY_LEN];
	double		ms = (double) (GetCurrentTimestamp() - started) / 1000.0;

	worker_summary_fit(summary_to_jsonb(summary), json);
	worker_shared_record_cycle(kind, started, ms, json);
}

static void
record_error(CycleKind kind)
{
	ErrorData  *error = CopyErrorData();

	worker_shared_set_error(kind == CYCLE_GUARD ? WORKER_ERROR_GUARD : WORKER_ERROR_ENQUEUE,
							error->message ? error->message : "unknown error");
	FreeErrorData(error);
}

/* When the cycle just run has work due next; 0: none known. */
typedef struct CycleDue
{
	TimestampTz guard;
	TimestampTz enqueue;
} CycleDue;

/* Whether a cycle ended repositories' steps, and so may have freed slots. */
static bool
freed_slots(const CycleSummary *summary)
{
	return summary->counts[SL_ABORTED] + summary->counts[SL_SKIPPED] +
		summary->counts[SL_FINISHED] + summary->counts[SL_CANCELED] > 0;
}

/*
 * One cycle in its own transactions (the cycle commits between
 * repositories). Returns true when it changed a repository, so the caller
 * can refill freed slots at once. An error is logged and kept for
 * worker_status; the worker goes on. The cycle is counted once it is over:
 * by its summary when it ran to its end (committed), else as an error.
 */
static bool
run_worker_cycle(CycleKind kind, MemoryContext cycle_memory, CycleDue *due)
{
	void		(*body) (CycleSummary *) = kind == CYCLE_GUARD ? guard_cycle_body : enqueue_cycle_body;
	const char *name = kind == CYCLE_GUARD ? "guard cycle" : "enqueue cycle";
	TimestampTz started = GetCurrentTimestamp();
	CycleSummary summary;
	volatile bool changed = false;
	volatile bool completed = false;

	due->guard = due->enqueue = 0;
	worker_shared_set_activity(name);
	pgstat_report_activity(STATE_RUNNING, name);
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (rm_worker_role_named())
			require_worker_grants();
		/* What the cycle keeps lives here, across its commits. */
		MemoryContextSwitchTo(cycle_memory);
		run_cycle(kind, body, &summary, CYCLE_COMMITS_WORKER);
		record_cycle(kind, started, &summary);
		changed = freed_slots(&summary);
		due->guard = summary.guard_due_at;
		due->enqueue = summary.enqueue_due_at;
		PopActiveSnapshot();
		CommitTransactionCommand();
		completed = true;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cycle_memory);
		record_error(kind);
		EmitErrorReport();
		AbortCurrentTransaction();
		FlushErrorState();
	}
	PG_END_TRY();
	worker_shared_count_cycle(kind, completed ? &summary : NULL);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextReset(cycle_memory);
	return changed;
}

static TimestampTz
ms_from_now(int ms)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
}

/*
 * A cycle also runs as soon as it has work due, rather than up to an
 * interval later: the guard when a step in process becomes stale or
 * long-running (a step whose notification was lost holds its slot only for
 * max_step_duration), the enqueuer when a repository it held back may be
 * taken again. Never sooner than DUE_MIN_GAP_MS from now, so that work
 * falling due one piece after the other is done together.
 */
#define DUE_MIN_GAP_MS 25

static TimestampTz
earlier_if_due(TimestampTz next, TimestampTz due)
{
	if (due == 0)
		return next;
	/* Just past the moment: the cycles take what is older than their thresholds. */
	return Min(next, Max(TimestampTzPlusMilliseconds(due, 1), ms_from_now(DUE_MIN_GAP_MS)));
}

void
registry_migration_worker_main(Datum arg)
{
	MemoryContext cycle_memory;
	TimestampTz next_guard;
	TimestampTz next_enqueue;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* Attached first, so that worker_status shows a wait before connecting. */
	worker_shared_attach(rm_database);
	worker_connect();
	am_registry_migration_worker = true;
	/* Only the worker's own requests are counted. */
	registry_answer_hook = worker_shared_count_answer;
	cycle_memory = AllocSetContextCreate(TopMemoryContext, "registry_migration cycle",
										 ALLOCSET_DEFAULT_SIZES);
	next_guard = next_enqueue = GetCurrentTimestamp();

	for (;;)
	{
		const char *idle;
		bool		reloaded;
		bool		woken;
		bool		guard_wanted;
		CycleDue	due;

		woken = worker_wait(Min(ms_until(next_guard), ms_until(next_enqueue)), &reloaded);
		if (reloaded)
		{
			/* New intervals count from now. */
			next_guard = Min(next_guard, ms_from_now(rm_guard_interval_ms));
			next_enqueue = Min(next_enqueue, ms_from_now(rm_enqueue_interval_ms));
		}
		if ((idle = reason_to_idle()) != NULL)
		{
			worker_shared_set_activity(idle);
			next_guard = ms_from_now(rm_guard_interval_ms);
			next_enqueue = ms_from_now(rm_enqueue_interval_ms);
			continue;
		}
		/* A backend may want the guard at once, to confirm a failure it was told of. */
		guard_wanted = worker_shared_take_guard_wanted();
		if (guard_wanted || GetCurrentTimestamp() >= next_guard)
		{
			next_guard = ms_from_now(rm_guard_interval_ms);
			if (run_worker_cycle(CYCLE_GUARD, cycle_memory, &due))
				woken = true;	/* slots may have been freed */
			next_guard = earlier_if_due(next_guard, due.guard);
		}
		if (woken || GetCurrentTimestamp() >= next_enqueue)
		{
			next_enqueue = ms_from_now(rm_enqueue_interval_ms);
			run_worker_cycle(CYCLE_ENQUEUER, cycle_memory, &due);
			next_guard = earlier_if_due(next_guard, due.guard);
			next_enqueue = earlier_if_due(next_enqueue, due.enqueue);
		}
		worker_shared_set_activity("waiting");
	}
}
