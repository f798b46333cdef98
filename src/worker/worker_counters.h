/*
 * worker_counters.h — what the background worker counts since it started:
 * its cycles by how they ended, per kind, and the registry's answers to
 * them by class. Kept in the worker's shared memory (worker_shared.c), shown
 * by the worker_status view as jsonb.
 */
#ifndef RM_WORKER_COUNTERS_H
#define RM_WORKER_COUNTERS_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/timestamp.h"

#include "control/summary.h"
#include "core/registry_api.h"

/* How a guard cycle ended; an enqueue cycle ends for a StopReason or an error. */
typedef enum GuardOutcome
{
	GUARD_RAN,
	GUARD_ANOTHER_CYCLE_RUNNING,
	GUARD_ERROR
} GuardOutcome;

#define GUARD_OUTCOMES (GUARD_ERROR + 1)
#define ENQUEUE_ERROR STOP_COUNT	/* after the stop reasons */
#define ENQUEUE_OUTCOMES (ENQUEUE_ERROR + 1)

typedef struct WorkerCounters
{
	TimestampTz since;			/* when the worker started counting */
	int64		guard[GUARD_OUTCOMES];
	int64		enqueue[ENQUEUE_OUTCOMES];
	int64		answers[ANSWER_COUNTERS];
} WorkerCounters;

/*
 * The counter a cycle of this kind goes to: by its summary, or the error
 * counter when summary is NULL (the cycle raised an error).
 */
extern int	cycle_outcome(CycleKind kind, const CycleSummary *summary);

/*
 * The counters as JSON objects, every counter present (zeros included):
 * {"guard": {...}, "enqueue": {...}} and {"ok": n, ...}.
 */
extern void worker_counters_cycles_json(const WorkerCounters *counters, StringInfo out);
extern void worker_counters_answers_json(const WorkerCounters *counters, StringInfo out);

#endif
