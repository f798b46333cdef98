/*
 * reconcile.h — bringing a repository in line with the status the registry
 * reports: the retry decision (core/decision.h) says what to do, this
 * module turns it into the event it calls for and lists the repository.
 * The guard, the enqueuer's retry and the admin retry() all go through it.
 */
#ifndef RM_RECONCILE_H
#define RM_RECONCILE_H

#include "postgres.h"

#include "control/summary.h"
#include "core/decision.h"
#include "store/settings.h"
#include "store/state_machine.h"

/* Where a reconciliation lists the repository, which depends on the cycle. */
typedef struct ReconcileLists
{
	SummaryList marked;			/* the registry runs a step after all */
	bool		list_pre_import_finish; /* the pre-import finished: "finished" */
} ReconcileLists;

typedef enum Reconciled
{
	RECONCILED,					/* recorded and listed: nothing more to do */
	RECONCILED_START_IMPORT,	/* the pre-import's end is recorded; the final
								 * import is the caller's to start */
	NOT_RECONCILED				/* none, unknown or a retry: the caller's call */
} Reconciled;

/*
 * Act on the retry decision for the locked repository and the registry's
 * status string (NULL: unusable):
 *
 *   finish_import, finish_import_native   finish_import, listed "finished"
 *   mark_pre_importing, mark_importing    the mark, listed lists->marked
 *   skip                                  skip (too_many_retries)
 *   abort                                 abort (canceled by the registry
 *                                         when its status says canceled)
 *   start_import                          finish_pre_import
 *   none, unknown, retry_*                nothing
 *
 * The decision is returned in *decision.
 */
extern Reconciled reconcile(Repository *repo, const char *registry_status,
							const EventNote *note, const MigrationSettings *settings,
							CycleSummary *summary, const ReconcileLists *lists,
							RetryDecision *decision);

/* Skip the repository as too_many_retries, listed "skipped". */
extern void skip_too_many_retries(Repository *repo, const EventNote *note,
								  const MigrationSettings *settings, CycleSummary *summary);

#endif
