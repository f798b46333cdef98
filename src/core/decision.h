/*
 * decision.h — the retry decision: what to do when the registry reports a
 * status for a repository we hold in some state.
 *
 * Pure C (no server headers): compiled into the extension and, a second
 * time, into the sanitized unit-test binary under test/unit.
 */
#ifndef RM_DECISION_H
#define RM_DECISION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/states.h"

/*
 * What the registry's import API says about a repository; RS_UNKNOWN for
 * any other string, which the decision treats as "cannot tell".
 */
typedef enum RegistryStatus
{
	RS_UNKNOWN,
	RS_NATIVE,
	RS_PRE_IMPORT_IN_PROGRESS,
	RS_PRE_IMPORT_COMPLETE,
	RS_PRE_IMPORT_FAILED,
	RS_PRE_IMPORT_CANCELED,
	RS_IMPORT_IN_PROGRESS,
	RS_IMPORT_COMPLETE,
	RS_IMPORT_FAILED,
	RS_IMPORT_CANCELED
} RegistryStatus;

#define RS_COUNT (RS_IMPORT_CANCELED + 1)

typedef enum RetryDecision
{
	RD_NONE,
	RD_UNKNOWN,
	RD_ABORT,
	RD_SKIP,
	RD_FINISH_IMPORT,
	RD_FINISH_IMPORT_NATIVE,
	RD_MARK_PRE_IMPORTING,
	RD_MARK_IMPORTING,
	RD_START_IMPORT,
	RD_RETRY_PRE_IMPORT,
	RD_RETRY_IMPORT
} RetryDecision;

#define RD_COUNT (RD_RETRY_IMPORT + 1)

/* Exact, case-sensitive match; NULL and unlisted strings give RS_UNKNOWN. */
extern RegistryStatus registry_status_parse(const char *status);

/* The same for status[0..len), which need not be NUL-terminated. */
extern RegistryStatus registry_status_parse_n(const char *status, size_t len);

/* The registry's spelling of a status; "?" for RS_UNKNOWN. */
extern const char *registry_status_name(RegistryStatus status);

/*
 * The statuses that end a step (complete, failed, canceled): the only ones
 * the registry sends as notifications.
 */
extern bool registry_status_ends_step(RegistryStatus status);

/* pre_import_canceled and import_canceled: the registry stopped the step. */
extern bool registry_status_is_cancel(RegistryStatus status);

extern const char *retry_decision_name(RetryDecision decision);

/*
 * The decision table. retries_count and max_retries must be >= 0; the SQL
 * entry point checks that before calling.
 */
extern RetryDecision decide_retry(MigrationState state, RegistryStatus status,
								  int32_t retries_count, int32_t max_retries);

#endif
