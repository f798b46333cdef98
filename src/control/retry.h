/*
 * retry.h — retrying an aborted repository, given the registry's answer to
 * its status request. The enqueuer does it for the aborted repositories it
 * picks; the admin function retry() does it for one on demand.
 */
#ifndef RM_RETRY_H
#define RM_RETRY_H

#include "postgres.h"

#include "control/starts.h"
#include "control/summary.h"
#include "registry/registry_client.h"
#include "store/settings.h"
#include "store/state_machine.h"

/*
 * For the locked import_aborted repository: record what the registry
 * reports if it ended or runs the step after all; otherwise start the step
 * again (the one the registry reports as failed, or for an unknown status
 * the one the repository was at), or skip it once its retries are used up.
 * Lists it in summary (the enqueuer's lists).
 */
extern HandleOutcome retry_aborted(Repository *repo, const RegistryAnswer *status,
								   const MigrationSettings *settings, EventCause cause,
								   CycleSummary *summary);

#endif
