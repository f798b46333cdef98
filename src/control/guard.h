/*
 * guard.h — the guard cycle: finds repositories whose step is stale or
 * canceled, asks the registry, and resolves each one.
 */
#ifndef RM_GUARD_H
#define RM_GUARD_H

#include "control/summary.h"

/* One guard cycle's work, run inside run_cycle (by SQL or the worker). */
extern void guard_cycle_body(CycleSummary *summary);

#endif
