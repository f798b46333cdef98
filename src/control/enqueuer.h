/*
 * enqueuer.h — the enqueue cycle (SPEC §6), and its retry of an aborted
 * repository, which the admin function retry() shares.
 */
#ifndef RM_ENQUEUER_H
#define RM_ENQUEUER_H

#include "postgres.h"

#include "registry/registry_client.h"
#include "store/settings.h"
#include "store/state_machine.h"
#include "control/summary.h"

/* One enqueue cycle's work, run inside run_cycle (by SQL or the worker). */
extern void enqueue_cycle_body(CycleSummary *summary);

/* How handling one repository went, for the cycle. */
typedef enum HandleOutcome
{
	HANDLED,
	HANDLED_TOO_MANY_IMPORTS,	/* the registry answered 429: stop starting */
	HANDLED_UNAVAILABLE			/* no usable answer: stop the cycle */
} HandleOutcome;

/*
 * SPEC §6 step 3a for the locked import_aborted repository, given the
 * registry's answer to its status request. Lists it in summary.
 */
extern HandleOutcome retry_aborted(Repository *repo, const RegistryAnswer *status,
								   const MigrationSettings *settings, EventCause cause,
								   CycleSummary *summary);

#endif
