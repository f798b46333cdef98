/*
 * state_machine.h — the one place that changes a repository's state.
 *
 * Every change checks the event against the repository's current state
 * (transitions.c), writes the new row and one event-log row per state
 * change, and leaves the row locked. All functions need an SPI connection.
 *
 * The cycles read a row without locking it, ask the registry, and change it
 * only when the answer is there to apply: a notification about the same
 * repository never waits on a registry request. The first change to such a
 * row writes it only if it is still the version read; otherwise it locks
 * the row and checks that its migration state is what was read.
 */
#ifndef RM_STATE_MACHINE_H
#define RM_STATE_MACHINE_H

#include "postgres.h"

#include "core/transitions.h"
#include "store/event_log.h"
#include "store/settings.h"

typedef struct Repository
{
	int64		id;
	char	   *path;
	RepositoryRow row;
	int32		consecutive_429s;	/* answers "too many imports" to starts in a row */
	TransactionId xmin;			/* of the row version read */
	bool		locked;			/* its row is locked by this transaction */
} Repository;

/* The columns of repositories a Repository is read from, in its order. */
#define REPOSITORY_COLUMNS \
	"id, path, state::text, pre_import_started_at, pre_import_done_at," \
	" import_started_at, import_done_at, aborted_at, skipped_at, retries_count," \
	" skipped_reason::text, aborted_in_state::text, consecutive_429s, xmin"

/*
 * Fill *repo, not locked, from row 0 of SPI_tuptable, a row of
 * REPOSITORY_COLUMNS; its path is allocated in the current memory context.
 */
extern void repository_from_spi_row(Repository *repo);

/* Lock the repository's row (FOR UPDATE); false when there is no such row. */
extern bool repository_lock_by_path(const char *path, Repository *repo);
extern bool repository_lock_by_id(int64 id, Repository *repo);

/* Read the repository's row without locking it; false when there is none. */
extern bool repository_read_by_id(int64 id, Repository *repo);
extern bool repository_read_by_path(const char *path, Repository *repo);

/*
 * Lock a row read without a lock, unless it is locked already, and check
 * that its migration state is still what was read: state, timestamps and
 * retries. Otherwise ERRCODE_T_R_SERIALIZATION_FAILURE: someone changed it
 * while the registry was being asked, and the answer no longer applies.
 * Every change below calls it before writing a row that changed since it
 * was read.
 */
extern void repository_lock_unchanged(Repository *repo);

/*
 * Apply the event to the repository. When the event is not allowed
 * from its state, nothing changes and outcome.allowed is false. settings
 * are those the caller read once (a cycle, at its start): an abort at the
 * retry limit becomes a skip by their max_retries.
 */
extern TransitionOutcome repository_apply(Repository *repo, const TransitionRequest *request,
										  const EventNote *note,
										  const MigrationSettings *settings);

/* Apply an event that must be allowed; an error otherwise. */
extern TransitionOutcome repository_apply_or_error(Repository *repo,
												   const TransitionRequest *request,
												   const EventNote *note,
												   const MigrationSettings *settings);

/* Store the count of consecutive 429 answers to starts. */
extern void repository_set_consecutive_429s(Repository *repo, int32 count);

/* Raise 55000: the event is not allowed from the repository's state. */
extern void repository_refused_error(const Repository *repo, MigrationEvent event) pg_attribute_noreturn();

#endif
