/*
 * cycle.h — what the guard and the enqueuer share: one cycle of a kind at a
 * time, and isolating each repository's handling from the others.
 */
#ifndef RM_CYCLE_H
#define RM_CYCLE_H

#include "postgres.h"

#include "summary.h"

/*
 * Take the cycle lock of a kind without waiting: a session-level advisory
 * lock (class 1380798791 = 'RMIG', object 1 = guard, 2 = enqueuer) in the
 * current database, so whoever runs cycles — pg_cron, the worker, a person —
 * never runs two of a kind at once. False when another session holds it.
 */
extern bool cycle_try_lock(CycleKind kind);
extern void cycle_unlock(CycleKind kind);

/*
 * Run one cycle: take its lock (or report "ran": false), run body, release
 * the lock whatever happens, and log the summary.
 */
extern void run_cycle(CycleKind kind, void (*body) (CycleSummary *), CycleSummary *summary);

/*
 * Run fn(arg) in a subtransaction. On an error the subtransaction is rolled
 * back, *message gets the error's text and false is returned; a query cancel
 * or termination is re-thrown. Requires an SPI connection.
 */
extern bool run_isolated(void (*fn) (void *), void *arg, char **message);

#endif
