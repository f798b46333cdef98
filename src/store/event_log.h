/*
 * event_log.h — the event log (table registry_migration.events): one row per
 * state change, and per thing worth knowing that changed no state (a
 * notification that changed nothing, a start whose answer was lost, a
 * failure notification held for confirmation), kept for
 * settings.event_retention.
 */
#ifndef RM_EVENT_LOG_H
#define RM_EVENT_LOG_H

#include "postgres.h"

#include "utils/timestamp.h"

#include "core/states.h"
#include "core/transitions.h"

/* What the log records about a change besides the states. */
typedef struct EventNote
{
	EventCause	cause;
	const char *registry_status;	/* NULL: none involved */
	int			http_status;	/* 0: none involved */
	const char *detail;			/* NULL: none */
} EventNote;

/*
 * One row for a step of the state machine, with the skip reason it wrote
 * (if any). Requires an SPI connection.
 */
extern void event_log_write(int64 repository_id, const char *path, const TransitionStep *step,
							const EventNote *note, TimestampTz at);

/*
 * One row that changed no state (new_state = old_state = state), named
 * event, at clock_timestamp(). Requires an SPI connection.
 */
extern void event_log_no_change(int64 repository_id, const char *path, MigrationState state,
								const char *event, const EventNote *note);

/*
 * Whether the repository has an event of this name, written while it was
 * in state, after its last state change (the last row whose old and new
 * states differ). Requires an SPI connection.
 */
extern bool event_log_since_last_change(int64 repository_id, MigrationState state,
										const char *event);

/*
 * Remove up to max_rows rows older than settings.event_retention, oldest
 * first; returns how many were removed. Requires an SPI connection.
 */
extern int64 event_log_purge(int max_rows);

#endif
