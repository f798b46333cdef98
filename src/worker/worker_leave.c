/*
 * worker_leave.c — DROP DATABASE of the database the worker serves.
 *
 * A session connected to a database makes DROP DATABASE fail ("being
 * accessed by other users"), and the worker is connected to its database
 * for as long as it runs. So the backend that drops the worker's database
 * first asks the worker to exit; DROP DATABASE then waits (up to 5 s) for
 * sessions to leave, and the worker is gone within a fraction of a second.
 * The postmaster starts it again WORKER_RESTART_S later, and it serves a
 * database of that name once one exists again (pg_regress, for one, drops
 * and re-creates its database at once).
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/procarray.h"
#include "tcop/utility.h"
#include "utils/acl.h"

#include "worker/worker_connect.h"
#include "worker/worker_leave.h"
#include "worker/worker_shared.h"

static ProcessUtility_hook_type prev_process_utility = NULL;

/*
 * Whether this DROP DATABASE can go ahead: it is a statement of its own,
 * the database exists, is not this session's, and the user may drop it.
 * Any other drop fails anyway, and must not cost the worker a restart.
 */
static bool
drop_can_proceed(const char *dbname, ProcessUtilityContext context)
{
	Oid			dboid;

	if (context != PROCESS_UTILITY_TOPLEVEL || IsTransactionBlock())
		return false;
	dboid = get_database_oid(dbname, true);
	return OidIsValid(dboid) && dboid != MyDatabaseId &&
		pg_database_ownercheck(dboid, GetUserId());
}

static void
ask_worker_to_leave(const char *dbname, ProcessUtilityContext context)
{
	pid_t		pid = worker_shared_pid_serving(dbname);

	if (pid == 0 || !drop_can_proceed(dbname, context))
		return;
	/* The worker stops on SIGTERM between two steps, or in a registry request. */
	if (BackendPidGetProc(pid) != NULL && kill(pid, SIGTERM) == 0)
		ereport(LOG,
				(errmsg("registry_migration worker asked to leave database \"%s\", which is being dropped",
						dbname),
				 errdetail("It starts again in %d s, and serves a database of that name once one exists.",
						   WORKER_RESTART_S)));
}

static void
leave_before_drop(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				  ProcessUtilityContext context, ParamListInfo params,
				  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *statement = pstmt->utilityStmt;

	if (IsA(statement, DropdbStmt))
		ask_worker_to_leave(((DropdbStmt *) statement)->dbname, context);
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

void
worker_leave_init(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = leave_before_drop;
}
