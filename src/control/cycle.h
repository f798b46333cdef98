/*
 * cycle.h — what the guard and the enqueuer share: one cycle of a kind at a
 * time, and isolating each repository's handling from the others.
 */
#ifndef RM_CYCLE_H
#define RM_CYCLE_H

#include "postgres.h"

#include "control/summary.h"

/*
 * Who ends the transactions of a cycle. Called from SQL as a function the
 * caller's transaction holds the whole cycle, so every row the cycle
 * changed stays locked until the caller commits. The worker and the
 * procedures (CALL) commit after each repository instead, so a row is
 * locked only while its answer is applied.
 */
typedef enum CycleCommits
{
	CYCLE_IN_CALLER_TRANSACTION,	/* a function: nothing is committed */
	CYCLE_COMMITS_WORKER,		/* the worker starts and commits them itself */
	CYCLE_COMMITS_PROCEDURE		/* CALL: through SPI, on a non-atomic connection */
} CycleCommits;

/*
 * Run one cycle: take its lock without waiting (or report "ran": false),
 * trim the event log, run body, release the lock whatever happens, and log
 * the summary. The lock is an advisory lock (class 1380798791 = 'RMIG',
 * object 1 = guard, 2 = enqueuer) in the current database, so whoever runs
 * cycles — pg_cron, the worker, a person — never runs two of a kind at once.
 */
extern void run_cycle(CycleKind kind, void (*body) (CycleSummary *), CycleSummary *summary,
					  CycleCommits commits);

/*
 * The cycles call this between repositories: unless the cycle runs in its
 * caller's transaction, it ends the SPI connection, commits, and starts a
 * new transaction and SPI connection. Data the cycle keeps across commit
 * points lives in the memory context that was current when it connected to
 * SPI.
 */
extern void cycle_commit_point(void);

/*
 * One repository of a cycle: handle(arg) in a subtransaction. On an error
 * the repository is listed under "errors", the error is logged, *error is
 * set to its message and on_error(arg) runs in a subtransaction of its own
 * (it aborts the repository), so one repository's error changes only that
 * repository and the cycle goes on. A query cancel or termination ends the
 * whole cycle. True when handle succeeded. Requires an SPI connection.
 */
extern bool handle_repository(void (*handle) (void *), void (*on_error) (void *), void *arg,
							  const char **error, CycleSummary *summary, const char *path);

#endif
