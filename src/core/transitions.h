/*
 * transitions.h — the state machine of a repository as a pure
 * function on a repository row: which event is allowed from which state,
 * and what entering the new state changes.
 *
 * Pure C (no server headers): the server side (state_machine.c) loads the
 * locked row, calls transition_apply() and writes the result back.
 */
#ifndef RM_TRANSITIONS_H
#define RM_TRANSITIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/states.h"

typedef enum MigrationEvent
{
	EV_START_PRE_IMPORT,
	EV_MARK_PRE_IMPORTING,
	EV_FINISH_PRE_IMPORT,
	EV_START_IMPORT,
	EV_MARK_IMPORTING,
	EV_FINISH_IMPORT,
	EV_ABORT,
	EV_SKIP,
	EV_RESET,
	/*
	 * A retry of an aborted repository failed before it started (an error
	 * while handling it): it stays aborted with one more retry and a new
	 * aborted_at.
	 */
	EV_RETRY_FAILED
} MigrationEvent;

#define EV_COUNT (EV_RETRY_FAILED + 1)

/* A nullable timestamp, in the server's TimestampTz unit (microseconds). */
typedef struct OptionalTime
{
	bool		set;
	int64_t		at;
} OptionalTime;

/* The migration columns of registry_migration.repositories. */
typedef struct RepositoryRow
{
	MigrationState state;
	OptionalTime pre_import_started_at;
	OptionalTime pre_import_done_at;
	OptionalTime import_started_at;
	OptionalTime import_done_at;
	OptionalTime aborted_at;
	OptionalTime skipped_at;
	int32_t		retries_count;
	bool		has_skipped_reason;
	SkipReason	skipped_reason;
	bool		has_aborted_in_state;
	MigrationState aborted_in_state;
} RepositoryRow;

typedef struct TransitionRequest
{
	MigrationEvent event;
	/* EV_SKIP: the reason; EV_FINISH_IMPORT: "finish import as R" when set */
	bool		has_reason;
	SkipReason	reason;
	/* EV_ABORT: the registry canceled the step itself (its notification or status said so) */
	bool		canceled_by_registry;
} TransitionRequest;

/* One state change, as the event log records it. */
typedef struct TransitionStep
{
	MigrationEvent event;
	MigrationState old_state;
	MigrationState new_state;
	/* The skip reason this step wrote: a skip, or "finish import as R" */
	bool		has_reason;
	SkipReason	reason;
} TransitionStep;

/* An abort can be followed by the automatic skip: at most two steps. */
#define TRANSITION_MAX_STEPS 2

typedef struct TransitionOutcome
{
	bool		allowed;
	int			nsteps;
	TransitionStep steps[TRANSITION_MAX_STEPS];
} TransitionOutcome;

extern const char *migration_event_name(MigrationEvent event);

extern bool event_allowed(MigrationEvent event, MigrationState from);

/* The states an event is allowed from, as "a, b, c", for error messages. */
extern void event_allowed_states_text(MigrationEvent event, char *buf, size_t buflen);

/*
 * Apply the event to *row at time now. When the event is not allowed from
 * row->state, *row is left unchanged and outcome.allowed is false.
 */
extern TransitionOutcome transition_apply(RepositoryRow *row,
										  const TransitionRequest *request,
										  int32_t max_retries, int64_t now);

#endif
