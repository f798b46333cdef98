/*
 * candidates.h — how the enqueuer finds its work: the next repository of a
 * kind, oldest first, never one it handled earlier in the same cycle; how
 * many repositories hold a slot; whether a step finished too recently.
 * All functions need an SPI connection.
 */
#ifndef RM_CANDIDATES_H
#define RM_CANDIDATES_H

#include "postgres.h"

#include "store/settings.h"
#include "store/state_machine.h"

/* What one round of the enqueuer is about. */
typedef enum Candidate
{
	CANDIDATE_FINAL_IMPORT,		/* pre_import_done, by pre_import_done_at */
	CANDIDATE_ABORTED,			/* import_aborted, by aborted_at */
	CANDIDATE_NEW				/* default, by created_at, within the plan */
} Candidate;

/* Repositories handled in this cycle: each at most once per cycle. */
typedef struct Handled
{
	MemoryContext memory;		/* kept across the cycle's commit points */
	int64	   *ids;
	int			count;
	int			size;
} Handled;

extern void handled_remember(Handled *handled, int64 id);

/*
 * The next candidate of a kind not handled yet, its row read without a
 * lock; false when there is none. Aborted and new repositories whose root
 * namespace is denied are passed over. The path is allocated in the
 * memory of handled, which outlasts the cycle's commits.
 */
extern bool candidate_next(Candidate kind, const MigrationSettings *settings,
						   const Handled *handled, Repository *repo);

/*
 * When the first aborted repository held back after a "not ready" answer
 * may be taken again; 0 when none is held. One in a denied root namespace
 * is never taken, so it does not count.
 */
extern TimestampTz held_until(void);

/* Repositories in process: each holds one slot of the capacity. */
extern int64 count_in_process(void);

/*
 * True when a step finished less than enqueue_waiting_time ago: the latest
 * of the four finish times (pre-import done, import done, aborted, skipped)
 * of the repositories in any of those four states.
 */
extern bool waiting_after_finish(const MigrationSettings *settings);

#endif
