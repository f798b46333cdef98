/*
 * event_log.h — the event log (table registry_migration.events): one row per
 * state change, and per notification that changed nothing, kept for
 * settings.event_retention.
 */
#ifndef RM_EVENT_LOG_H
#define RM_EVENT_LOG_H

#include "postgres.h"

#include "utils/timestamp.h"

#include "core/states.h"

/* What the log records about a change besides the states. */
typedef struct EventNote
{
	EventCause	cause;
	const char *registry_status;	/* NULL: none involved */
	int			http_status;	/* 0: none involved */
	const char *detail;			/* NULL: none */
} EventNote;

/* One row of the event log. Requires an SPI connection. */
extern void event_log_write(int64 repository_id, const char *path,
							MigrationState old_state, MigrationState new_state,
							const char *event, const EventNote *note, TimestampTz at);

/*
 * Remove up to max_rows rows older than settings.event_retention, oldest
 * first; returns how many were removed. Requires an SPI connection.
 */
extern int64 event_log_purge(int max_rows);

#endif
