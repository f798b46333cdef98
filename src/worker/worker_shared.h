/*
 * worker_shared.h — what the background worker shares with the backends:
 * its latch (so a backend can wake it when a slot frees up), its status
 * slots and its counters (read by the worker_status view). Exists only with
 * the library preloaded: worker_shared_copy, worker_shared_set_error and
 * worker_wake may be called from any backend and then report "no worker" or
 * do nothing; the other functions are the worker's own.
 */
#ifndef RM_WORKER_SHARED_H
#define RM_WORKER_SHARED_H

#include "postgres.h"

#include "storage/latch.h"
#include "storage/s_lock.h"
#include "utils/timestamp.h"

#include "control/summary.h"
#include "core/registry_api.h"
#include "worker/worker_counters.h"

#define WORKER_SUMMARY_LEN 2048
#define WORKER_TEXT_LEN 512
/* Room for "waiting to retry connecting as role" and a role name. */
#define WORKER_ACTIVITY_LEN 128

/* The last cycle of one kind the worker ran. */
typedef struct WorkerCycleSlot
{
	TimestampTz at;				/* when it started; 0 before the first one */
	double		ms;				/* how long it took */
	char		summary[WORKER_SUMMARY_LEN];	/* jsonb text, cut to fit */
} WorkerCycleSlot;

/*
 * Where an error of the worker came from. Each source keeps its latest
 * error until the worker does again what failed: a connection error until
 * it connects (or a cycle ran, proving the connection and its role), a
 * guard or enqueue error until a cycle of that kind runs to its end.
 */
typedef enum WorkerErrorSource
{
	WORKER_ERROR_CONNECTION,	/* connecting, or the role connected as */
	WORKER_ERROR_GUARD,
	WORKER_ERROR_ENQUEUE
} WorkerErrorSource;

#define WORKER_ERROR_SOURCES (WORKER_ERROR_ENQUEUE + 1)

typedef struct WorkerError
{
	TimestampTz at;				/* 0: none */
	char		message[WORKER_TEXT_LEN];
} WorkerError;

typedef struct WorkerShared
{
	slock_t		mutex;
	pid_t		pid;			/* 0 when no worker runs */
	Latch	   *latch;			/* the worker's PGPROC latch (shared memory) */
	char		database[NAMEDATALEN];
	char		activity[WORKER_ACTIVITY_LEN];
	TimestampTz since;			/* start of the current activity */
	WorkerCycleSlot last_guard;
	WorkerCycleSlot last_enqueue;
	WorkerError errors[WORKER_ERROR_SOURCES];
	WorkerCounters counters;	/* since this worker process started */
	int			connect_failures;	/* failed connection attempts in a row */
	bool		guard_wanted;	/* a backend asked for a guard cycle at once */
} WorkerShared;

/* Shared memory hooks, installed by _PG_init while preloading. */
extern void worker_shared_init(void);

/*
 * A consistent copy of the worker's status into *copy; false when no worker
 * runs (or the library was not preloaded).
 */
extern bool worker_shared_copy(WorkerShared *copy);

/*
 * Called by the worker when it starts: it now owns the status slots, and
 * gives them up when it exits, however it exits.
 */
extern void worker_shared_attach(const char *database);

/*
 * The worker's process id when a worker runs for database (connected to it,
 * or about to connect); 0 otherwise. Any backend may ask.
 */
extern pid_t worker_shared_pid_serving(const char *database);

/* What the worker does now, shown with the time it started doing it. */
extern void worker_shared_set_activity(const char *activity);

/*
 * Keep message as the current error of its source, cut at a character
 * boundary; it replaces the source's earlier one.
 */
extern void worker_shared_set_error(WorkerErrorSource source, const char *message);

/* The worker connected: a connection error is over. */
extern void worker_shared_connected(void);

/* The most recent of the current errors in copy, or NULL when none is. */
extern const WorkerError *worker_shared_current_error(const WorkerShared *copy);

/* Failed connection attempts in a row; they outlive a restarted worker. */
extern int	worker_shared_connect_failures(void);
extern void worker_shared_set_connect_failures(int failures);

/* Keep the outcome of a cycle; summary_json must fit WORKER_SUMMARY_LEN. */
extern void worker_shared_record_cycle(CycleKind kind, TimestampTz started, double ms,
									   const char *summary_json);

/*
 * Count a cycle of the worker by how it ended (summary NULL: it raised an
 * error). A cycle that ran to its end ends the errors of its kind and of
 * the connection; one that found another cycle of its kind running did
 * nothing, and ends none.
 */
extern void worker_shared_count_cycle(CycleKind kind, const CycleSummary *summary);

/* Count an answer of the registry to one of the worker's requests. */
extern void worker_shared_count_answer(AnswerCounter counter);

/*
 * Set the worker's latch, if a worker runs and this is not the worker: the
 * listener of the store's commit signal, so that a slot freed in any
 * backend is refilled without waiting for the next tick. With guard_wanted
 * the worker also runs its guard cycle at once (a held failure notification
 * waits for its confirmation).
 */
extern void worker_wake(bool guard_wanted);

/* Whether a guard cycle was asked for since the last call (the worker's own). */
extern bool worker_shared_take_guard_wanted(void);

/* Set by the worker itself, which never needs to wake itself. */
extern bool am_registry_migration_worker;

#endif
