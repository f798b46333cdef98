/*
 * summary.h — the jsonb a cycle returns (what it did, repository by
 * repository, in named lists) and its one-line summary in the server log.
 */
#ifndef RM_SUMMARY_H
#define RM_SUMMARY_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/timestamp.h"

typedef enum SummaryList
{
	SL_FINAL_IMPORTS,
	SL_RETRIED,
	SL_STARTED,
	SL_FINISHED,
	SL_SKIPPED,
	SL_ABORTED,
	SL_CANCELED,
	SL_MARKED,
	SL_LEFT_ALONE,
	SL_UNAVAILABLE,				/* enqueuer: passed over, no usable answer */
	SL_NOT_READY,				/* enqueuer: passed over, the registry's cool-down */
	SL_ERRORS
} SummaryList;

#define SL_COUNT (SL_ERRORS + 1)

typedef enum CycleKind
{
	CYCLE_GUARD,
	CYCLE_ENQUEUER
} CycleKind;

/* Why an enqueue cycle ended: the "stopped" member of its summary. */
typedef enum StopReason
{
	STOP_NOTHING_TO_DO,			/* also the value before the cycle decides */
	STOP_DISABLED,
	STOP_RETRY_AFTER,
	STOP_AT_CAPACITY,
	STOP_WAITING_TIME,
	STOP_TOO_MANY_IMPORTS,
	STOP_REGISTRY_UNAVAILABLE,
	STOP_ANOTHER_CYCLE_RUNNING
} StopReason;

#define STOP_COUNT (STOP_ANOTHER_CYCLE_RUNNING + 1)

extern const char *stop_reason_name(StopReason reason);

/*
 * Why the guard left a repository it looked at as it was: the breakdown
 * its summary gives under "left_alone_reasons". Every reason but
 * LA_STATE_CHANGED lists the repository under "left_alone"; a repository
 * someone else changed meanwhile is listed under "errors" ("state
 * changed") and counted here too.
 */
typedef enum LeftAloneReason
{
	LA_RUNNING,					/* the registry runs the step, not yet long-running */
	LA_REGISTRY_UNAVAILABLE,	/* no usable status, under twice the threshold */
	LA_CANCEL_NOT_ACCEPTED,		/* long-running; the cancel and the status settled nothing */
	LA_FAILURE_DISMISSED,		/* a held failure report the registry contradicts */
	LA_CONFIRMATION_PENDING,	/* a held failure report the registry could not confirm yet */
	LA_STATE_CHANGED			/* changed by someone else while the registry was asked */
} LeftAloneReason;

#define LA_COUNT (LA_STATE_CHANGED + 1)

typedef struct CycleSummary
{
	CycleKind	kind;
	bool		ran;
	StopReason	stopped;		/* enqueuer: why the cycle ended */
	int			stale;			/* guard: repositories handled */
	bool		has_retry_after;
	TimestampTz retry_after_until;
	int			counts[SL_COUNT];
	int			left_alone_reasons[LA_COUNT];	/* the guard's breakdown */
	/* For the worker's schedule; 0: none known. */
	TimestampTz guard_due_at;	/* a step in process becomes stale or long-running */
	TimestampTz enqueue_due_at; /* a repository held back may be taken again */
	StringInfoData items[SL_COUNT]; /* JSON array elements, comma-separated */
} CycleSummary;

extern void summary_init(CycleSummary *summary, CycleKind kind);

/* Keep the earlier of *due and at (0: none). */
extern void summary_due(TimestampTz *due, TimestampTz at);

/*
 * Add a repository to a list. detail is the reason (enqueuer's finished and
 * skipped lists) or the message (errors); ignored by lists of paths.
 */
extern void summary_add(CycleSummary *summary, SummaryList list, const char *path,
						const char *detail);

/* Leave a repository as it is, for a reason: listed under "left_alone". */
extern void summary_left_alone(CycleSummary *summary, const char *path, LeftAloneReason reason);

/*
 * The repository changed while the cycle was asking the registry about it:
 * its answer is dropped, and it is listed under "errors" as "state
 * changed".
 */
extern void summary_state_changed(CycleSummary *summary, const char *path);

/*
 * Whether the cycle had nothing to do: it changed no repository, met no
 * error and stopped for a reason that is the migration's ordinary pace (an
 * enqueuer that found nothing to start, or was held by the capacity, the
 * waiting time, a pause or a pending Retry-After; a guard whose stale steps
 * all still run within their threshold). Such a cycle logs at DEBUG1.
 */
extern bool summary_is_routine(const CycleSummary *summary);

/* The summary as jsonb. */
extern Datum summary_to_jsonb(const CycleSummary *summary);

/*
 * One line at registry_migration.log_level, or at DEBUG1 (never above that
 * level) when the cycle had nothing to do.
 */
extern void summary_log(const CycleSummary *summary);

#endif
