/*
 * starts.h — starting a step on the registry: the request is sent first,
 * then the repository changes as the answer calls for and is listed in the
 * cycle's summary.
 */
#ifndef RM_STARTS_H
#define RM_STARTS_H

#include "postgres.h"

#include "control/summary.h"
#include "registry/registry_client.h"
#include "store/settings.h"
#include "store/state_machine.h"

/* How handling one repository went, for the enqueuer's next round. */
typedef enum HandleOutcome
{
	HANDLED,					/* on a usable answer */
	HANDLED_TOO_MANY_IMPORTS,	/* a registry-wide 429: stop starting */
	HANDLED_NOT_READY,			/* a 429 about this repository alone: pass it over */
	HANDLED_FAILED_ANSWER,		/* a connection, but no usable answer: pass it over */
	HANDLED_REGISTRY_DOWN,		/* no connection could be made: stop the cycle */
	HANDLED_FINAL_IMPORT_DUE	/* its pre-import's end is recorded: the caller
								 * requests the final import once that is
								 * committed */
} HandleOutcome;

/* The outcome of a request the registry gave no usable answer to. */
extern HandleOutcome unavailable_outcome(const RegistryAnswer *answer);

/*
 * Request a pre-import (final = false) or a final import of the repository
 * (read, not locked: the row is locked only once the answer is in, and the
 * answer is dropped with ERRCODE_T_R_SERIALIZATION_FAILURE if the row
 * changed meanwhile), record the answer and list the repository: under
 * started_list (final_imports, retried or started) when it is now in
 * process, under finished, skipped or aborted when the answer ended it.
 * Requires SPI.
 */
extern HandleOutcome start_step(Repository *repo, bool final, const MigrationSettings *settings,
								EventCause cause, CycleSummary *summary,
								SummaryList started_list);

#endif
