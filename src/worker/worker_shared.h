/*
 * worker_shared.h — what the background worker shares with the backends:
 * its latch (to be woken when a slot frees up) and its status (for the
 * worker_status view). Exists only with the library preloaded.
 */
#ifndef RM_WORKER_SHARED_H
#define RM_WORKER_SHARED_H

#include "postgres.h"

#include "storage/latch.h"
#include "storage/s_lock.h"
#include "utils/timestamp.h"

#define WORKER_SUMMARY_LEN 2048
#define WORKER_TEXT_LEN 512
/* Room for "waiting to retry connecting as role" and a role name. */
#define WORKER_ACTIVITY_LEN 128

typedef struct WorkerShared
{
	slock_t		mutex;
	pid_t		pid;			/* 0 when no worker runs */
	Latch	   *latch;			/* the worker's PGPROC latch (shared memory) */
	char		database[NAMEDATALEN];
	char		activity[WORKER_ACTIVITY_LEN];
	TimestampTz since;			/* start of the current activity */
	TimestampTz last_guard_at;
	double		last_guard_ms;
	char		last_guard_summary[WORKER_SUMMARY_LEN];
	TimestampTz last_enqueue_at;
	double		last_enqueue_ms;
	char		last_enqueue_summary[WORKER_SUMMARY_LEN];
	TimestampTz last_error_at;
	char		last_error[WORKER_TEXT_LEN];
	int			connect_failures;	/* failed connection attempts in a row */
} WorkerShared;

/* Shared memory hooks, installed by _PG_init while preloading. */
extern void worker_shared_init(void);

/* The shared struct, or NULL when the library was not preloaded. */
extern WorkerShared *worker_shared(void);

/* Keep message as the worker's last error, cut at a character boundary. */
extern void worker_shared_set_error(const char *message);

/*
 * A cycle summary (jsonb) as text for a buffer of WORKER_SUMMARY_LEN bytes:
 * as it is when it fits, otherwise still valid JSON, with every list cut to
 * what fits, "truncated": true and each list's full length under "counts".
 */
extern void worker_summary_fit(Datum summary, char *buffer);

/*
 * Set the worker's latch, if a worker runs and this is not the worker: the
 * listener of the store's commit signal, so that a slot freed in any
 * backend is refilled without waiting for the next tick.
 */
extern void worker_wake(void);

/* Set by the worker itself, which never needs to wake itself. */
extern bool am_registry_migration_worker;

#endif
