/*
 * starts.h — starting a step on the registry (SPEC §3.4): the request is
 * sent first, then the repository changes as the answer calls for.
 */
#ifndef RM_STARTS_H
#define RM_STARTS_H

#include "postgres.h"

#include "registry/registry_client.h"
#include "store/settings.h"
#include "store/state_machine.h"
#include "control/summary.h"

typedef struct StartResult
{
	AnswerClass answer;
	bool		listed;			/* the repository goes into list */
	SummaryList list;
	const char *reason;			/* finished: native_import/not_found; skipped: the reason */
	char	   *problem;		/* what the registry answer said was wrong */
	bool		has_retry_after;
	TimestampTz retry_after_until;
} StartResult;

/*
 * Request a pre-import (final = false) or a final import of the locked
 * repository and record the answer. started_list is where a repository now
 * in process is listed (final_imports, retried or started). Requires SPI.
 */
extern StartResult start_step(Repository *repo, bool final, const MigrationSettings *settings,
							  EventCause cause, SummaryList started_list);

#endif
