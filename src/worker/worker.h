/*
 * worker.h — the background worker.
 */
#ifndef RM_WORKER_H
#define RM_WORKER_H

#include "control/summary.h"

/* Register the worker; only while the library is preloaded. */
extern void worker_register(void);

/* The cycles' bodies, run by the worker in its own transactions. */
extern void guard_cycle_body(CycleSummary *summary);
extern void enqueue_cycle_body(CycleSummary *summary);

#endif
