/*
 * enqueuer.h — the enqueue cycle: final imports first, then new work (a
 * retry of an aborted repository, or a new one) one repository per round
 * while below capacity.
 */
#ifndef RM_ENQUEUER_H
#define RM_ENQUEUER_H

#include "control/summary.h"

/* One enqueue cycle's work, run inside run_cycle (by SQL or the worker). */
extern void enqueue_cycle_body(CycleSummary *summary);

#endif
