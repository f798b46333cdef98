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

typedef struct CycleSummary
{
	CycleKind	kind;
	bool		ran;
	StopReason	stopped;		/* enqueuer: why the cycle ended */
	int			stale;			/* guard: repositories handled */
	bool		has_retry_after;
	TimestampTz retry_after_until;
	int			counts[SL_COUNT];
	StringInfoData items[SL_COUNT]; /* JSON array elements, comma-separated */
} CycleSummary;

extern void summary_init(CycleSummary *summary, CycleKind kind);

/*
 * Add a repository to a list. detail is the reason (enqueuer's finished and
 * skipped lists) or the message (errors); ignored by lists of paths.
 */
extern void summary_add(CycleSummary *summary, SummaryList list, const char *path,
						const char *detail);

/* The summary as jsonb. */
extern Datum summary_to_jsonb(const CycleSummary *summary);

/* One line at registry_migration.log_level. */
extern void summary_log(const CycleSummary *summary);

#endif
