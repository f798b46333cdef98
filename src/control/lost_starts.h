/*
 * lost_starts.h — starts whose answer was lost.
 *
 * A start that reached the registry but got no usable answer (a timeout
 * after connecting, a reset, a 5xx) may have been carried out all the same.
 * Nothing changes for the repository then (no retry is spent), but the
 * event log records it as "start_unanswered", and that record is what later
 * evidence is read against: a 200 "already imported" to a later start is
 * our own import finishing, not a native repository, and a completion
 * notification for a repository still at `default` is the registry
 * reporting the step we asked for, not a stray one.
 */
#ifndef RM_LOST_STARTS_H
#define RM_LOST_STARTS_H

#include "postgres.h"

#include "core/decision.h"
#include "registry/registry_client.h"
#include "store/event_log.h"
#include "store/settings.h"
#include "store/state_machine.h"

/* The event-log name of a start whose answer was lost. */
#define LOST_START_EVENT "start_unanswered"

/*
 * After a start (final: the final import, else the pre-import) answered
 * "registry unavailable": record it when the registry may have carried it
 * out. Writes one event row and changes nothing else, so the repository's
 * row need not be locked. Requires SPI.
 */
extern void lost_start_record(const Repository *repo, bool final, const RegistryAnswer *answer,
							  EventCause cause);

/*
 * Whether a start of the repository lost its answer since the repository's
 * last state change. Requires SPI.
 */
extern bool lost_start_pending(const Repository *repo);

/*
 * For a locked `default` repository with a lost start: what the registry's
 * notification status (a step's end) means. A completion is applied as if
 * the start had been answered 202 — a pre-import is started and finished,
 * an import finished — and true is returned; a failure or cancel of a
 * start that never changed the repository changes nothing (false).
 */
extern bool lost_start_completion(Repository *repo, RegistryStatus status, const EventNote *note,
								  const MigrationSettings *settings);

#endif
