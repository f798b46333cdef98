/*
 * worker_shared.c — the worker's shared memory, waking it on commit, and
 * the worker_status view's function.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"

#include "worker_shared.h"

bool		am_registry_migration_worker = false;

static WorkerShared *shared = NULL;
static bool wake_pending = false;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
request_shared(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(WorkerShared)));
}

static void
attach_shared(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("registry_migration worker", sizeof(WorkerShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(*shared));
		SpinLockInit(&shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
worker_shared_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = request_shared;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = attach_shared;
}

WorkerShared *
worker_shared(void)
{
	return shared;
}

static void
wake_on_commit(XactEvent event, void *arg)
{
	Latch	   *latch = NULL;

	if (event == XACT_EVENT_COMMIT && wake_pending && shared != NULL)
	{
		SpinLockAcquire(&shared->mutex);
		if (shared->pid != 0)
			latch = shared->latch;
		SpinLockRelease(&shared->mutex);
		if (latch)
			SetLatch(latch);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		wake_pending = false;
}

void
worker_wake_init(void)
{
	RegisterXactCallback(wake_on_commit, NULL);
}

void
worker_wake_at_commit(void)
{
	if (!am_registry_migration_worker)
		wake_pending = true;
}

PG_FUNCTION_INFO_V1(rm_worker_status);

/* One row about the worker, or none when no worker runs. */
Datum
rm_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WorkerShared copy;
	Datum		values[12];
	bool		nulls[12] = {false};

	InitMaterializedSRF(fcinfo, 0);
	if (shared == NULL)
		return (Datum) 0;
	SpinLockAcquire(&shared->mutex);
	copy = *shared;
	SpinLockRelease(&shared->mutex);
	if (copy.pid == 0)
		return (Datum) 0;

	values[0] = Int32GetDatum(copy.pid);
	values[1] = DirectFunctionCall1(namein, CStringGetDatum(copy.database));
	values[2] = CStringGetTextDatum(copy.activity);
	values[3] = TimestampTzGetDatum(copy.since);
	values[4] = TimestampTzGetDatum(copy.last_guard_at);
	nulls[4] = copy.last_guard_at == 0;
	values[5] = Float8GetDatum(copy.last_guard_ms);
	nulls[5] = nulls[4];
	values[6] = CStringGetTextDatum(copy.last_guard_summary);
	nulls[6] = nulls[4];
	values[7] = TimestampTzGetDatum(copy.last_enqueue_at);
	nulls[7] = copy.last_enqueue_at == 0;
	values[8] = Float8GetDatum(copy.last_enqueue_ms);
	nulls[8] = nulls[7];
	values[9] = CStringGetTextDatum(copy.last_enqueue_summary);
	nulls[9] = nulls[7];
	values[10] = CStringGetTextDatum(copy.last_error);
	nulls[10] = copy.last_error[0] == '\0';
	values[11] = TimestampTzGetDatum(copy.last_error_at);
	nulls[11] = nulls[10];
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(rm_settings_changed);

/*
 * AFTER UPDATE trigger on registry_migration.settings: the worker reads the
 * settings at every cycle, so a change (enabling the migration, raising the
 * capacity) wakes it at commit instead of waiting for its next tick.
 */
Datum
rm_settings_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("settings_changed() must be called as a trigger")));
	worker_wake_at_commit();
	return PointerGetDatum(NULL);
}
