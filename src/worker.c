/*
 * worker.c — the background worker (SPEC §9): runs the enqueuer every
 * enqueue_interval (and at once when a committed change freed a slot), the
 * guard every guard_interval, in registry_migration.database.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "cycle.h"
#include "event_log.h"
#include "guc.h"
#include "summary.h"
#include "worker.h"
#include "worker_shared.h"

/* Seconds before the postmaster restarts a worker that exited with an error. */
#define WORKER_RESTART_S 5

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

static void
set_activity(const char *activity)
{
	WorkerShared *shared = worker_shared();

	SpinLockAcquire(&shared->mutex);
	strlcpy(shared->activity, activity, sizeof(shared->activity));
	shared->since = GetCurrentTimestamp();
	SpinLockRelease(&shared->mutex);
}

static void
detach(int code, Datum arg)
{
	WorkerShared *shared = worker_shared();

	SpinLockAcquire(&shared->mutex);
	shared->pid = 0;
	shared->latch = NULL;
	SpinLockRelease(&shared->mutex);
}

static void
attach(void)
{
	WorkerShared *shared = worker_shared();

	SpinLockAcquire(&shared->mutex);
	shared->pid = MyProcPid;
	shared->latch = MyLatch;
	strlcpy(shared->database, rm_database, sizeof(shared->database));
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(detach, (Datum) 0);
	set_activity("starting");
}

/* Why the worker should not run cycles now, or NULL when it should. */
static const char *
reason_to_idle(void)
{
	bool		installed;

	if (!rm_worker_enabled)
		return "idle: registry_migration.worker_enabled is off";
	if (RecoveryInProgress())
		return "idle: the server is in recovery";
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("registry_migration", true));
	CommitTransactionCommand();
	return installed ? NULL : "idle: the extension is not installed in this database";
}

static void
record_cycle(CycleKind kind, TimestampTz started, const CycleSummary *summary)
{
	WorkerShared *shared = worker_shared();
	char	   *json = JsonbToCString(NULL, &DatumGetJsonbP(summary_to_jsonb(summary))->root, 0);
	double		ms = (double) (GetCurrentTimestamp() - started) / 1000.0;

	SpinLockAcquire(&shared->mutex);
	if (kind == CYCLE_GUARD)
	{
		shared->last_guard_at = started;
		shared->last_guard_ms = ms;
		strlcpy(shared->last_guard_summary, json, WORKER_SUMMARY_LEN);
	}
	else
	{
		shared->last_enqueue_at = started;
		shared->last_enqueue_ms = ms;
		strlcpy(shared->last_enqueue_summary, json, WORKER_SUMMARY_LEN);
	}
	SpinLockRelease(&shared->mutex);
}

static void
record_error(void)
{
	WorkerShared *shared = worker_shared();
	ErrorData  *error = CopyErrorData();

	SpinLockAcquire(&shared->mutex);
	strlcpy(shared->last_error, error->message ? error->message : "unknown error",
			sizeof(shared->last_error));
	shared->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&shared->mutex);
	FreeErrorData(error);
}

/*
 * One cycle in its own transactions (the cycle commits between
 * repositories). Returns true when it changed a repository, so the caller
 * can refill freed slots at once. An error is logged and kept for
 * worker_status; the worker goes on.
 */
static bool
run_worker_cycle(CycleKind kind, MemoryContext cycle_memory)
{
	void		(*body) (CycleSummary *) = kind == CYCLE_GUARD ? guard_cycle_body : enqueue_cycle_body;
	const char *name = kind == CYCLE_GUARD ? "guard cycle" : "enqueue cycle";
	TimestampTz started = GetCurrentTimestamp();
	CycleSummary summary;
	volatile bool changed = false;

	set_activity(name);
	pgstat_report_activity(STATE_RUNNING, name);
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		/* What the cycle keeps lives here, across its commits. */
		MemoryContextSwitchTo(cycle_memory);
		run_cycle(kind, body, &summary);
		record_cycle(kind, started, &summary);
		changed = summary.counts[SL_ABORTED] + summary.counts[SL_SKIPPED] +
			summary.counts[SL_FINISHED] + summary.counts[SL_CANCELED] > 0;
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cycle_memory);
		record_error();
		EmitErrorReport();
		AbortCurrentTransaction();
		FlushErrorState();
	}
	PG_END_TRY();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextReset(cycle_memory);
	return changed;
}

static long
ms_until(TimestampTz when)
{
	long		ms = (long) ((when - GetCurrentTimestamp()) / 1000);

	return Max(ms, 0);
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
	BackgroundWorkerInitializeConnection(rm_database, NULL, 0);
	am_registry_migration_worker = true;
	cycle_commit_between_repositories(true);
	attach();
	cycle_memory = AllocSetContextCreate(TopMemoryContext, "registry_migration cycle",
										 ALLOCSET_DEFAULT_SIZES);
	next_guard = next_enqueue = GetCurrentTimestamp();

	for (;;)
	{
		const char *idle;
		bool		woken;
		int			rc;

		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   Min(ms_until(next_guard), ms_until(next_enqueue)), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		woken = (rc & WL_LATCH_SET) != 0;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* New intervals count from now. */
			next_guard = Min(next_guard, GetCurrentTimestamp() + (int64) rm_guard_interval_ms * 1000);
			next_enqueue = Min(next_enqueue, GetCurrentTimestamp() + (int64) rm_enqueue_interval_ms * 1000);
		}
		if ((idle = reason_to_idle()) != NULL)
		{
			set_activity(idle);
			next_guard = GetCurrentTimestamp() + (int64) rm_guard_interval_ms * 1000;
			next_enqueue = GetCurrentTimestamp() + (int64) rm_enqueue_interval_ms * 1000;
			continue;
		}
		if (GetCurrentTimestamp() >= next_guard)
		{
			next_guard = GetCurrentTimestamp() + (int64) rm_guard_interval_ms * 1000;
			if (run_worker_cycle(CYCLE_GUARD, cycle_memory))
				woken = true;	/* slots may have been freed */
		}
		if (woken || GetCurrentTimestamp() >= next_enqueue)
		{
			next_enqueue = GetCurrentTimestamp() + (int64) rm_enqueue_interval_ms * 1000;
			run_worker_cycle(CYCLE_ENQUEUER, cycle_memory);
		}
		set_activity("waiting");
	}
}
