/*
 * failure_reports.h — failure notifications confirmed before they abort.
 *
 * A notification does not say which attempt of a step it reports. A
 * `*_failed` or `*_canceled` that arrives late — after the step it reports
 * was aborted by other means and retried — would abort the retry. So a
 * failure reported while the repository's current step is younger than
 * FAILURE_CONFIRM_WINDOW_S is held: the notification changes nothing,
 * records a "failure_pending" event (the durable marker) and asks the
 * worker for a guard cycle. Every guard cycle — the worker's, pg_cron's or
 * a SQL caller's — then asks the registry for the status of each held
 * report's repository, once, and acts on it:
 *
 *   failed, canceled, unknown, 404   aborted, as the notification would have
 *   the step running                 left alone ("failure_dismissed")
 *   finished, or another step        recorded, as the guard records it
 *   no usable answer                 held until the next guard cycle
 *
 * A report is dropped when its step ends or changes, and when the step is
 * older than max_step_duration: the guard's rules for stale steps apply
 * from then on, so a held report never keeps a repository in process.
 */
#ifndef RM_FAILURE_REPORTS_H
#define RM_FAILURE_REPORTS_H

#include "postgres.h"

#include "control/summary.h"
#include "core/decision.h"
#include "store/settings.h"
#include "store/state_machine.h"

/*
 * How young a step must be for a failure notification to be confirmed
 * first, in seconds. It covers a duplicate or delayed delivery of the
 * previous attempt's failure (the registry reports a step's end at once; a
 * receiving application that retries a delivery does so within seconds),
 * while a failure reported later than this is acted on at once, as before.
 */
#define FAILURE_CONFIRM_WINDOW_S 10

#define FAILURE_PENDING_EVENT "failure_pending"
#define FAILURE_DISMISSED_EVENT "failure_dismissed"

/*
 * For a locked repository in process that a failure notification would
 * abort: when its current step is younger than the window, record the
 * notification as held, ask for a guard cycle at commit, and return true
 * (nothing else changes). False when the notification is to be applied at
 * once. Never calls the registry. Requires SPI.
 */
extern bool failure_report_hold(const Repository *repo, const char *status_text);

/*
 * The guard's last job, after the stale steps: confirm up to
 * guard_batch_size held reports with the registry, listing each repository
 * as the guard lists what it changes (a dismissed report, or one the
 * registry could not answer for, under left_alone). Data kept across the
 * cycle's commit points lives in cycle_memory. Requires SPI.
 */
extern void failure_reports_confirm(const MigrationSettings *settings, CycleSummary *summary,
									MemoryContext cycle_memory);

#endif
