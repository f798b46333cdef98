/*
 * cycle.c — cycle locks and per-repository subtransactions.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/lock.h"
#include "utils/guc.h"
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

/*
 * Where a procedure's statements resolve names. A function pins its path
 * with SET search_path; a procedure cannot (it could not commit then), so
 * the cycle pins it itself in each of its transactions.
 */
#define PROCEDURE_SEARCH_PATH "pg_catalog, registry_migration, pg_temp"

/* How the running cycle commits. */
static CycleCommits cycle_commits = CYCLE_IN_CALLER_TRANSACTION;

/* The GUC nest level of the pinned path, for a procedure; 0: none. */
static int	pinned_path_level = 0;

/* Pinned until the transaction ends or the level is popped. */
static void
pin_procedure_search_path(void)
{
	pinned_path_level = NewGUCNestLevel();
	(void) set_config_option("search_path", PROCEDURE_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

static void
unpin_procedure_search_path(void)
{
	if (pinned_path_level > 0)
		AtEOXact_GUC(true, pinned_path_level);
	pinned_path_level = 0;
}

static void
cycle_lock_tag(LOCKTAG *tag, CycleKind kind)
{
	/* The same tag pg_try_advisory_lock(int4, int4) uses. */
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, CYCLE_LOCK_CLASS,
						 kind == CYCLE_GUARD ? 1 : 2, 2);
}

/*
 * In its caller's transaction, the lock is held until that transaction
 * ends, so a second cycle cannot start before the first one's changes are
 * visible. A cycle that commits holds it for the session, until it ends.
 */
static bool
cycle_try_lock(CycleKind kind)
{
	LOCKTAG		tag;

	cycle_lock_tag(&tag, kind);
	return LockAcquire(&tag, ExclusiveLock, cycle_commits != CYCLE_IN_CALLER_TRANSACTION,
					   true) != LOCKACQUIRE_NOT_AVAIL;
}

static void
cycle_unlock(CycleKind kind)
{
	LOCKTAG		tag;

	if (cycle_commits == CYCLE_IN_CALLER_TRANSACTION)
		return;					/* released with the transaction */
	cycle_lock_tag(&tag, kind);
	LockRelease(&tag, ExclusiveLock, true);
}

/* The worker owns its transactions and the snapshot each one pushes. */
static void
worker_commit(void)
{
	MemoryContext cycle_memory = CurrentMemoryContext;

	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	CHECK_FOR_INTERRUPTS();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(cycle_memory);
}

void
cycle_commit_point(void)
{
	if (cycle_commits == CYCLE_IN_CALLER_TRANSACTION)
		return;
	SPI_finish();
	if (cycle_commits == CYCLE_COMMITS_WORKER)
		worker_commit();
	else
	{
		/* The procedure's own connection, under the one just ended, is non-atomic. */
		SPI_commit();
		CHECK_FOR_INTERRUPTS();
		pin_procedure_search_path();	/* the commit undid it */
	}
	SPI_connect();
}

void
run_cycle(CycleKind kind, void (*body) (CycleSummary *), CycleSummary *summary,
		  CycleCommits commits)
{
	summary_init(summary, kind);
	cycle_commits = commits;
	if (commits == CYCLE_COMMITS_PROCEDURE)
		pin_procedure_search_path();
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
			cycle_commits = CYCLE_IN_CALLER_TRANSACTION;
			pinned_path_level = 0;	/* the abort undoes it */
			PG_RE_THROW();
		}
		PG_END_TRY();
		cycle_unlock(kind);
	}
	cycle_commits = CYCLE_IN_CALLER_TRANSACTION;
	unpin_procedure_search_path();
	summary_log(summary);
}

/*
 * Run fn(arg) in a subtransaction. On an error the subtransaction is rolled
 * back, *message gets the error's text and false is returned; a query cancel
 * or termination is re-thrown.
 */
static bool
run_isolated(void (*fn) (void *), void *arg, char **message, int *sqlerrcode)
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
		*sqlerrcode = error->sqlerrcode;
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
	int			sqlerrcode;

	if (run_isolated(handle, arg, &message, &sqlerrcode))
		return true;
	if (sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE)
	{
		/*
		 * Changed by someone else (a notification, an operator) while the
		 * registry was being asked: that change stands, the answer is
		 * dropped, and the next cycle looks at the repository afresh.
		 */
		summary_state_changed(summary, path);
		ereport(LOG, (errmsg("registry_migration %s: %s; left for the next cycle",
							 summary->kind == CYCLE_GUARD ? "guard" : "enqueuer", message)));
		*error = message;
		return false;
	}
	summary_add(summary, SL_ERRORS, path, message);
	ereport(WARNING,
			(errmsg("registry_migration %s: error on repository \"%s\": %s",
					summary->kind == CYCLE_GUARD ? "guard" : "enqueuer", path, message)));
	*error = message;
	(void) run_isolated(on_error, arg, &message, &sqlerrcode);
	return false;
}
