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
 * For an import_aborted repository (read, not locked): record what the
 * registry reports if it ended or runs the step after all; otherwise start
 * the step again (the one the registry reports as failed, or for an unknown
 * status the one the repository was at), or skip it once its retries are
 * used up. Lists it in summary (the enqueuer's lists). A finished pre-import
 * is recorded and HANDLED_FINAL_IMPORT_DUE returned: the final import is
 * requested by the caller once that change is committed, so the row is not
 * locked while the registry is asked.
 */
extern HandleOutcome retry_aborted(Repository *repo, const RegistryAnswer *status,
								   const MigrationSettings *settings, EventCause cause,
								   CycleSummary *summary);

#endif
