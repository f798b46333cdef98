/*
 * changes.h — what every cycle does around one repository's change: read
 * the row and make sure it is still as the cycle found it, apply an event
 * and list the repository in the summary, list it after an abort, and abort
 * it after an error. All functions need an SPI connection.
 */
#ifndef RM_CHANGES_H
#define RM_CHANGES_H

#include "postgres.h"

#include "utils/timestamp.h"

#include "control/summary.h"
#include "store/settings.h"
#include "store/state_machine.h"

/*
 * Read repository id, without locking it, and check that it is still in the
 * state the cycle chose it in (and, when step_started is given, that its
 * current step started then). Otherwise it is listed under "errors" with
 * "state changed" and false is returned. The row is locked by the first
 * change the cycle applies to it, after the registry's answers are in, and
 * that change fails if the row changed meanwhile (see state_machine.h).
 */
extern bool read_unchanged(int64 id, const char *path, MigrationState expected,
						   const TimestampTz *step_started, Repository *repo,
						   CycleSummary *summary);

/* When the current step of a locked repository started; 0 when unknown. */
extern TimestampTz current_step_start(const Repository *repo);

/*
 * Apply an event that must be allowed and list the repository; the detail
 * shown (where the list has one) is the request's reason.
 */
extern void change_listed(Repository *repo, const TransitionRequest *request,
						  const EventNote *note, const MigrationSettings *settings,
						  CycleSummary *summary, SummaryList list);

/*
 * After an abort: listed under "skipped" with its reason when the abort
 * reached the retry limit and became a skip, else under "aborted".
 */
extern void list_after_abort(const Repository *repo, CycleSummary *summary);

/* Abort the step (must be allowed) and list the repository. */
extern void abort_listed(Repository *repo, bool canceled_by_registry, const EventNote *note,
						 const MigrationSettings *settings, CycleSummary *summary);

/*
 * After an error in a repository's handling (its changes rolled back):
 * abort it, with the error as the detail, so the error counts against its
 * retries. With count_failed_retry, an aborted repository (one being
 * retried) records a failed retry instead. Nothing happens when the
 * repository is gone or its state allows neither.
 */
extern void abort_after_error(int64 id, const char *error, EventCause cause,
							  bool count_failed_retry, const MigrationSettings *settings,
							  CycleSummary *summary);

#endif
