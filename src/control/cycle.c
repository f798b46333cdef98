/*
 * cycle.c — cycle locks and per-repository subtransactions.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/lock.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "control/cycle.h"
#include "store/event_log.h"

#define CYCLE_LOCK_CLASS 1380798791	/* 'RMIG' */

/*
 * Every cycle trims the event log by at most this many rows: the log stays
 * within its retention without a job of its own, and no cycle waits long.
 */
#define CYCLE_PURGE_ROWS 1000

static bool commit_between_repositories = false;

static void
cycle_lock_tag(LOCKTAG *tag, CycleKind kind)
{
	/* The same tag pg_try_advisory_lock(int4, int4) uses. */
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, CYCLE_LOCK_CLASS,
						 kind == CYCLE_GUARD ? 1 : 2, 2);
}

/*
 * Called from SQL, the lock is held until the caller's transaction ends, so
 * a second cycle cannot start before the first one's changes are visible.
 * The worker commits inside its cycles and holds it for the session.
 */
static bool
cycle_try_lock(CycleKind kind)
{
	LOCKTAG		tag;

	cycle_lock_tag(&tag, kind);
	return LockAcquire(&tag, ExclusiveLock, commit_between_repositories, true) !=
		LOCKACQUIRE_NOT_AVAIL;
}

static void
cycle_unlock(CycleKind kind)
{
	LOCKTAG		tag;

	if (!commit_between_repositories)
		return;					/* released with the transaction */
	cycle_lock_tag(&tag, kind);
	LockRelease(&tag, ExclusiveLock, true);
}

void
cycle_commit_between_repositories(bool on)
{
	commit_between_repositories = on;
}

void
cycle_commit_point(void)
{
	MemoryContext cycle_memory;

	if (!commit_between_repositories)
		return;
	SPI_finish();
	cycle_memory = CurrentMemoryContext;
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	CHECK_FOR_INTERRUPTS();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(cycle_memory);
	SPI_connect();
}

void
run_cycle(CycleKind kind, void (*body) (CycleSummary *), CycleSummary *summary)
{
	summary_init(summary, kind);
	if (!cycle_try_lock(kind))
	{
		summary->ran = false;
		if (kind == CYCLE_ENQUEUER)
			summary->stopped = STOP_ANOTHER_CYCLE_RUNNING;
	}
	else
	{
		PG_TRY();
		{
			SPI_connect();
			event_log_purge(CYCLE_PURGE_ROWS);
			SPI_finish();
			body(summary);
		}
		PG_CATCH();
		{
			cycle_unlock(kind);
			PG_RE_THROW();
		}
		PG_END_TRY();
		cycle_unlock(kind);
	}
	summary_log(summary);
}

/*
 * Run fn(arg) in a subtransaction. On an error the subtransaction is rolled
 * back, *message gets the error's text and false is returned; a query cancel
 * or termination is re-thrown.
 */
static bool
run_isolated(void (*fn) (void *), void *arg, char **message)
{
	MemoryContext caller_context = CurrentMemoryContext;
	ResourceOwner caller_owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller_context);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller_context);
		CurrentResourceOwner = caller_owner;
	}
	PG_CATCH();
	{
		ErrorData  *error;

		MemoryContextSwitchTo(caller_context);
		error = CopyErrorData();
		/* Cancels and terminations end the whole cycle, not one repository. */
		if (error->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			error->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			PG_RE_THROW();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller_context);
		CurrentResourceOwner = caller_owner;
		*message = error->message ? pstrdup(error->message) : pstrdup("unknown error");
		FreeErrorData(error);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

bool
handle_repository(void (*handle) (void *), void (*on_error) (void *), void *arg,
				  const char **error, CycleSummary *summary, const char *path)
{
	char	   *message;

	if (run_isolated(handle, arg, &message))
		return true;
	summary_add(summary, SL_ERRORS, path, message);
	ereport(WARNING,
			(errmsg("registry_migration %s: error on repository \"%s\": %s",
					summary->kind == CYCLE_GUARD ? "guard" : "enqueuer", path, message)));
	*error = message;
	(void) run_isolated(on_error, arg, &message);
	return false;
}
