/*
 * worker_shared.c — the worker's shared memory: its latch, for waking it,
 * and its status slots and counters, for the worker_status view.
 *
 * Every access holds the spinlock only for a copy, never across a call
 * that could fail or wait.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "worker/worker_shared.h"

bool		am_registry_migration_worker = false;

static WorkerShared *shared = NULL;
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

bool
worker_shared_copy(WorkerShared *copy)
{
	if (shared == NULL)
		return false;
	SpinLockAcquire(&shared->mutex);
	*copy = *shared;
	SpinLockRelease(&shared->mutex);
	return copy->pid != 0;
}

/* Once the worker is gone, nobody may set its latch. */
static void
detach(int code, Datum arg)
{
	SpinLockAcquire(&shared->mutex);
	shared->pid = 0;
	shared->latch = NULL;
	SpinLockRelease(&shared->mutex);
}

/*
 * The counters start with the worker process: a restarted worker (and a
 * restarted server, whose shared memory is new) counts from zero again.
 */
void
worker_shared_attach(const char *database)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&shared->mutex);
	shared->pid = MyProcPid;
	shared->latch = MyLatch;
	strlcpy(shared->database, database, sizeof(shared->database));
	memset(&shared->counters, 0, sizeof(shared->counters));
	shared->counters.since = now;
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(detach, (Datum) 0);
	worker_shared_set_activity("starting");
}

pid_t
worker_shared_pid_serving(const char *database)
{
	pid_t		pid = 0;

	if (shared == NULL)
		return 0;
	SpinLockAcquire(&shared->mutex);
	if (shared->pid != 0 && strcmp(shared->database, database) == 0)
		pid = shared->pid;
	SpinLockRelease(&shared->mutex);
	return pid;
}

void
worker_shared_set_activity(const char *activity)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&shared->mutex);
	strlcpy(shared->activity, activity, sizeof(shared->activity));
	shared->since = now;
	SpinLockRelease(&shared->mutex);
}

void
worker_shared_set_error(WorkerErrorSource source, const char *message)
{
	int			len = pg_mbcliplen(message, strlen(message), WORKER_TEXT_LEN - 1);
	TimestampTz now = GetCurrentTimestamp();
	WorkerError *error;

	if (shared == NULL)
		return;
	error = &shared->errors[source];
	SpinLockAcquire(&shared->mutex);
	memcpy(error->message, message, len);
	error->message[len] = '\0';
	error->at = now;
	SpinLockRelease(&shared->mutex);
}

/* Called with the spinlock held. */
static void
clear_error(WorkerErrorSource source)
{
	shared->errors[source].at = 0;
	shared->errors[source].message[0] = '\0';
}

void
worker_shared_connected(void)
{
	SpinLockAcquire(&shared->mutex);
	clear_error(WORKER_ERROR_CONNECTION);
	SpinLockRelease(&shared->mutex);
}

const WorkerError *
worker_shared_current_error(const WorkerShared *copy)
{
	const WorkerError *latest = NULL;

	for (int i = 0; i < WORKER_ERROR_SOURCES; i++)
		if (copy->errors[i].at != 0 && (latest == NULL || copy->errors[i].at > latest->at))
			latest = &copy->errors[i];
	return latest;
}

int
worker_shared_connect_failures(void)
{
	int			failures;

	SpinLockAcquire(&shared->mutex);
	failures = shared->connect_failures;
	SpinLockRelease(&shared->mutex);
	return failures;
}

void
worker_shared_set_connect_failures(int failures)
{
	SpinLockAcquire(&shared->mutex);
	shared->connect_failures = failures;
	SpinLockRelease(&shared->mutex);
}

void
worker_shared_record_cycle(CycleKind kind, TimestampTz started, double ms,
						   const char *summary_json)
{
	WorkerCycleSlot *slot = kind == CYCLE_GUARD ? &shared->last_guard : &shared->last_enqueue;

	SpinLockAcquire(&shared->mutex);
	slot->at = started;
	slot->ms = ms;
	strlcpy(slot->summary, summary_json, WORKER_SUMMARY_LEN);
	SpinLockRelease(&shared->mutex);
}

void
worker_shared_count_cycle(CycleKind kind, const CycleSummary *summary)
{
	int			outcome = cycle_outcome(kind, summary);
	bool		ran = summary != NULL && summary->ran;

	SpinLockAcquire(&shared->mutex);
	if (kind == CYCLE_GUARD)
		shared->counters.guard[outcome]++;
	else
		shared->counters.enqueue[outcome]++;
	if (ran)
	{
		clear_error(kind == CYCLE_GUARD ? WORKER_ERROR_GUARD : WORKER_ERROR_ENQUEUE);
		clear_error(WORKER_ERROR_CONNECTION);
	}
	SpinLockRelease(&shared->mutex);
}

void
worker_shared_count_answer(AnswerCounter counter)
{
	if ((unsigned) counter >= ANSWER_COUNTERS)
		return;
	SpinLockAcquire(&shared->mutex);
	shared->counters.answers[counter]++;
	SpinLockRelease(&shared->mutex);
}

void
worker_wake(bool guard_wanted)
{
	Latch	   *latch = NULL;

	/* The worker's own changes need no wake: it runs the next cycle anyway. */
	if (shared == NULL || am_registry_migration_worker)
		return;
	SpinLockAcquire(&shared->mutex);
	if (shared->pid != 0)
	{
		latch = shared->latch;
		shared->guard_wanted |= guard_wanted;
	}
	SpinLockRelease(&shared->mutex);
	if (latch)
		SetLatch(latch);
}

bool
worker_shared_take_guard_wanted(void)
{
	bool		wanted;

	SpinLockAcquire(&shared->mutex);
	wanted = shared->guard_wanted;
	shared->guard_wanted = false;
	SpinLockRelease(&shared->mutex);
	return wanted;
}
