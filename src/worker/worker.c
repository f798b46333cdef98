/*
 * worker.c — the background worker: runs the enqueuer every
 * enqueue_interval (and at once when a committed change freed a slot), the
 * guard every guard_interval, in registry_migration.database.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "control/cycle.h"
#include "control/enqueuer.h"
#include "control/guard.h"
#include "store/event_log.h"
#include "guc.h"
#include "control/summary.h"
#include "worker/worker.h"
#include "worker/worker_shared.h"

/* Seconds before the postmaster restarts a worker that exited with an error. */
#define WORKER_RESTART_S 5

/*
 * Longest wait, on top of WORKER_RESTART_S, before connecting again after
 * failed attempts; the wait doubles from WORKER_RESTART_S up to it.
 */
#define RECONNECT_DELAY_MAX_S 300

/*
 * The worker's statements resolve names only here, whatever search_path
 * ALTER DATABASE or ALTER ROLE set: an operator or function placed earlier
 * in the path would otherwise run with the worker's rights.
 */
#define WORKER_SEARCH_PATH "pg_catalog, registry_migration, pg_temp"

PGDLLEXPORT void registry_migration_worker_main(Datum arg);

void
worker_register(void)
{
	BackgroundWorker worker = {0};

	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* Started on a standby too, where it idles until promotion. */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = WORKER_RESTART_S;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "registry_migration");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "registry_migration_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "registry_migration worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "registry_migration worker");
	RegisterBackgroundWorker(&worker);
}

static void
set_activity(const char *activity)
{
	WorkerShared *shared = worker_shared();

	SpinLockAcquire(&shared->mutex);
	strlcpy(shared->activity, activity, sizeof(shared->activity));
	shared->since = GetCurrentTimestamp();
	SpinLockRelease(&shared->mutex);
}

static void
detach(int code, Datum arg)
{
	WorkerShared *shared = worker_shared();

	SpinLockAcquire(&shared->mutex);
	shared->pid = 0;
	shared->latch = NULL;
	SpinLockRelease(&shared->mutex);
}

static void
attach(void)
{
	WorkerShared *shared = worker_shared();

	SpinLockAcquire(&shared->mutex);
	shared->pid = MyProcPid;
	shared->latch = MyLatch;
	strlcpy(shared->database, rm_database, sizeof(shared->database));
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(detach, (Datum) 0);
	set_activity("starting");
}

static long
ms_until(TimestampTz when)
{
	long		ms = (long) ((when - GetCurrentTimestamp()) / 1000);

	return Max(ms, 0);
}

static bool
has_worker_role(void)
{
	return rm_worker_role != NULL && rm_worker_role[0] != '\0';
}

/* ---- connecting -------------------------------------------------------- */

static emit_log_hook_type prev_emit_log_hook = NULL;

static int
connect_failures(void)
{
	WorkerShared *shared = worker_shared();
	int			failures;

	SpinLockAcquire(&shared->mutex);
	failures = shared->connect_failures;
	SpinLockRelease(&shared->mutex);
	return failures;
}

static void
set_connect_failures(int failures)
{
	WorkerShared *shared = worker_shared();

	SpinLockAcquire(&shared->mutex);
	shared->connect_failures = failures;
	SpinLockRelease(&shared->mutex);
}

/*
 * Installed only while connecting. A refused connection (no such role or
 * database, no LOGIN, no CONNECT) ends the process with FATAL, which never
 * returns here, so the error is kept on its way to the log: for
 * worker_status, and for the next start to wait before trying again.
 */
static void
keep_connection_error(ErrorData *edata)
{
	if (edata->elevel >= ERROR && edata->sqlerrcode != ERRCODE_ADMIN_SHUTDOWN)
	{
		char		message[WORKER_TEXT_LEN];

		if (has_worker_role())
			snprintf(message, sizeof(message), "could not connect to database \"%s\" as role \"%s\": %s",
					 rm_database, rm_worker_role, edata->message ? edata->message : "unknown error");
		else
			snprintf(message, sizeof(message), "could not connect to database \"%s\": %s",
					 rm_database, edata->message ? edata->message : "unknown error");
		worker_shared_set_error(message);
		set_connect_failures(connect_failures() + 1);
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * After failed attempts the postmaster restarts the worker every
 * WORKER_RESTART_S: wait longer each time, so that a wrong role or database
 * is one error every few minutes instead of a restart loop. The wait shows
 * in worker_status; a configuration reload (after fixing the role) ends it.
 */
static void
wait_before_reconnecting(int failures)
{
	char		activity[WORKER_ACTIVITY_LEN];
	int			delay_s = WORKER_RESTART_S;
	TimestampTz until;

	for (int i = 1; i < failures && delay_s < RECONNECT_DELAY_MAX_S; i++)
		delay_s *= 2;
	delay_s = Min(delay_s, RECONNECT_DELAY_MAX_S);
	if (has_worker_role())
		snprintf(activity, sizeof(activity), "waiting to retry connecting as role \"%s\"", rm_worker_role);
	else
		snprintf(activity, sizeof(activity), "waiting to retry connecting to database \"%s\"", rm_database);
	set_activity(activity);
	ereport(LOG,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("registry_migration worker %s for %d s", activity, delay_s),
			 errdetail_plural("%d connection attempt in a row failed.",
							  "%d connection attempts in a row failed.", failures, failures),
			 errhint("Check registry_migration.worker_role and registry_migration.database; "
					 "a configuration reload ends the wait.")));

	until = GetCurrentTimestamp() + (int64) delay_s * USECS_PER_SEC;
	while (ms_until(until) > 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ms_until(until), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			break;
		}
	}
}

/*
 * The configured worker_role was refused when the server started, and the
 * default left in its place is the bootstrap superuser: stay unconnected
 * (until the server is restarted with a valid value) instead.
 */
static void
stay_unconnected(void)
{
	set_activity("idle: registry_migration.worker_role has an invalid value");
	worker_shared_set_error("registry_migration.worker_role was refused when the server started; "
							"the worker does not connect until it is corrected and the server restarted");
	ereport(WARNING,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("registry_migration worker does not connect: registry_migration.worker_role has an invalid value"),
			 errdetail("Connecting as the bootstrap superuser in its place would defeat the setting."),
			 errhint("Correct registry_migration.worker_role and restart the server.")));
	for (;;)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

static void
connect_to_database(void)
{
	int			failures = connect_failures();

	if (rm_worker_role_refused)
		stay_unconnected();

	if (failures > 0)
		wait_before_reconnecting(failures);
	set_activity("connecting");
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = keep_connection_error;
	BackgroundWorkerInitializeConnection(rm_database, has_worker_role() ? rm_worker_role : NULL, 0);
	emit_log_hook = prev_emit_log_hook;
	set_connect_failures(0);
	SetConfigOption("search_path", WORKER_SEARCH_PATH, PGC_SUSET, PGC_S_OVERRIDE);
	if (failures > 0)
		ereport(LOG,
				(errmsg("registry_migration worker connected to database \"%s\" after %d failed attempts",
						rm_database, failures)));
}

/* ---- what the worker's role may do ------------------------------------- */

/*
 * Running as a superuser is what worker_role exists to avoid, so a
 * superuser role is refused. Checked at every tick: after ALTER ROLE ...
 * NOSUPERUSER the worker goes on without a restart.
 */
static bool
worker_role_is_superuser(void)
{
	static bool reported = false;
	bool		refused = has_worker_role() && superuser_arg(GetUserId());

	if (refused && !reported)
	{
		char		message[WORKER_TEXT_LEN];

		snprintf(message, sizeof(message),
				 "registry_migration.worker_role \"%s\" is a superuser", rm_worker_role);
		worker_shared_set_error(message);
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", message),
				 errdetail("The background worker runs no cycle as a superuser; it waits until the role is no longer one."),
				 errhint("Name a role without SUPERUSER that holds the worker's grants, or run ALTER ROLE %s NOSUPERUSER.",
						 quote_identifier(rm_worker_role))));
	}
	reported = refused;
	return refused;
}

/*
 * A privilege the worker's statements need. The documentation grants the
 * same, and test/t/055_worker_role.pl migrates with exactly its grants.
 * NULL columns: on the table (or on every column).
 */
typedef struct WorkerGrant
{
	const char *table;
	AclMode		privilege;
	const char *privilege_name;
	const char *const *columns;
} WorkerGrant;

/* The columns a state change writes (state_machine.c), and nothing else. */
static const char *const repository_update_columns[] = {
	"state", "pre_import_started_at", "pre_import_done_at", "import_started_at",
	"import_done_at", "aborted_at", "skipped_at", "retries_count", "skipped_reason",
	"aborted_in_state", "consecutive_429s", NULL
};

/* What removing old events reads. */
static const char *const event_select_columns[] = {"id", "at", NULL};

static const WorkerGrant worker_grants[] = {
	{"repositories", ACL_SELECT, "SELECT", NULL},
	{"repositories", ACL_UPDATE, "UPDATE", repository_update_columns},
	{"settings", ACL_SELECT, "SELECT", NULL},
	{"denied_namespaces", ACL_SELECT, "SELECT", NULL},
	{"registry_state", ACL_SELECT, "SELECT", NULL},
	{"registry_state", ACL_UPDATE, "UPDATE", NULL},
	{"events", ACL_INSERT, "INSERT", NULL},
	{"events", ACL_DELETE, "DELETE", NULL},
	{"events", ACL_SELECT, "SELECT", event_select_columns},
};

static void
missing_grant(const WorkerGrant *grant, const char *column)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 column
			 ? errmsg("role \"%s\" has no %s privilege on column \"%s\" of table registry_migration.%s",
					  rm_worker_role, grant->privilege_name, column, grant->table)
			 : errmsg("role \"%s\" has no %s privilege on table registry_migration.%s",
					  rm_worker_role, grant->privilege_name, grant->table),
			 errdetail("The background worker runs no cycle until registry_migration.worker_role holds every privilege its statements use."),
			 errhint("Grant the privileges documented for registry_migration.worker_role.")));
}

static void
require_grant(Oid schema, const WorkerGrant *grant)
{
	Oid			relid = get_relname_relid(grant->table, schema);
	Oid			role = GetUserId();

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"registry_migration.%s\" does not exist", grant->table)));
	if (pg_class_aclcheck(relid, role, grant->privilege) == ACLCHECK_OK)
		return;
	if (grant->columns == NULL)
	{
		if (pg_attribute_aclcheck_all(relid, role, grant->privilege, ACLMASK_ALL) != ACLCHECK_OK)
			missing_grant(grant, NULL);
		return;
	}
	for (const char *const *column = grant->columns; *column != NULL; column++)
	{
		AttrNumber	attnum = get_attnum(relid, *column);

		if (attnum == InvalidAttrNumber ||
			pg_attribute_aclcheck(relid, attnum, role, grant->privilege) != ACLCHECK_OK)
			missing_grant(grant, *column);
	}
}

/*
 * Checked before each cycle: a cycle isolates each repository's errors, so
 * a missing grant would otherwise show only as one error per repository
 * in the summary (or, for the event log, after a request was already
 * sent), not as the worker's error.
 */
static void
require_worker_grants(void)
{
	Oid			schema = get_namespace_oid("registry_migration", false);

	for (int i = 0; i < lengthof(worker_grants); i++)
		require_grant(schema, &worker_grants[i]);
}

/* ---- cycles ------------------------------------------------------------ */

/* Why the worker should not run cycles now, or NULL when it should. */
static const char *
reason_to_idle(void)
{
	static char refused[WORKER_ACTIVITY_LEN];
	bool		installed;
	bool		superuser_role;

	if (!rm_worker_enabled)
		return "idle: registry_migration.worker_enabled is off";
	if (RecoveryInProgress())
		return "idle: the server is in recovery";
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("registry_migration", true));
	superuser_role = worker_role_is_superuser();
	CommitTransactionCommand();
	if (superuser_role)
	{
		snprintf(refused, sizeof(refused), "idle: role \"%s\" is a superuser", rm_worker_role);
		return refused;
	}
	return installed ? NULL : "idle: the extension is not installed in this database";
}

static void
record_cycle(CycleKind kind, TimestampTz started, const CycleSummary *summary)
{
	WorkerShared *shared = worker_shared();
	char		json[WORKER_SUMMARY_LEN];
	double		ms = (double) (GetCurrentTimestamp() - started) / 1000.0;

	worker_summary_fit(summary_to_jsonb(summary), json);
	SpinLockAcquire(&shared->mutex);
	if (kind == CYCLE_GUARD)
	{
		shared->last_guard_at = started;
		shared->last_guard_ms = ms;
		strlcpy(shared->last_guard_summary, json, WORKER_SUMMARY_LEN);
	}
	else
	{
		shared->last_enqueue_at = started;
		shared->last_enqueue_ms = ms;
		strlcpy(shared->last_enqueue_summary, json, WORKER_SUMMARY_LEN);
	}
	SpinLockRelease(&shared->mutex);
}

static void
record_error(void)
{
	ErrorData  *error = CopyErrorData();

	worker_shared_set_error(error->message ? error->message : "unknown error");
	FreeErrorData(error);
}

/*
 * One cycle in its own transactions (the cycle commits between
 * repositories). Returns true when it changed a repository, so the caller
 * can refill freed slots at once. An error is logged and kept for
 * worker_status; the worker goes on.
 */
static bool
run_worker_cycle(CycleKind kind, MemoryContext cycle_memory)
{
	void		(*body) (CycleSummary *) = kind == CYCLE_GUARD ? guard_cycle_body : enqueue_cycle_body;
	const char *name = kind == CYCLE_GUARD ? "guard cycle" : "enqueue cycle";
	TimestampTz started = GetCurrentTimestamp();
	CycleSummary summary;
	volatile bool changed = false;

	set_activity(name);
	pgstat_report_activity(STATE_RUNNING, name);
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (has_worker_role())
			require_worker_grants();
		/* What the cycle keeps lives here, across its commits. */
		MemoryContextSwitchTo(cycle_memory);
		run_cycle(kind, body, &summary);
		record_cycle(kind, started, &summary);
		changed = summary.counts[SL_ABORTED] + summary.counts[SL_SKIPPED] +
			summary.counts[SL_FINISHED] + summary.counts[SL_CANCELED] > 0;
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cycle_memory);
		record_error();
		EmitErrorReport();
		AbortCurrentTransaction();
		FlushErrorState();
	}
	PG_END_TRY();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextReset(cycle_memory);
	return changed;
}

void
registry_migration_worker_main(Datum arg)
{
	MemoryContext cycle_memory;
	TimestampTz next_guard;
	TimestampTz next_enqueue;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* Attached first, so that worker_status shows a wait before connecting. */
	attach();
	connect_to_database();
	am_registry_migration_worker = true;
	cycle_commit_between_repositories(true);
	cycle_memory = AllocSetContextCreate(TopMemoryContext, "registry_migration cycle",
										 ALLOCSET_DEFAULT_SIZES);
	next_guard = next_enqueue = GetCurrentTimestamp();

	for (;;)
	{
		const char *idle;
		bool		woken;
		int			rc;

		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   Min(ms_until(next_guard), ms_until(next_enqueue)), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		woken = (rc & WL_LATCH_SET) != 0;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* New intervals count from now. */
			next_guard = Min(next_guard, GetCurrentTimestamp() + (int64) rm_guard_interval_ms * 1000);
			next_enqueue = Min(next_enqueue, GetCurrentTimestamp() + (int64) rm_enqueue_interval_ms * 1000);
		}
		if ((idle = reason_to_idle()) != NULL)
		{
			set_activity(idle);
			next_guard = GetCurrentTimestamp() + (int64) rm_guard_interval_ms * 1000;
			next_enqueue = GetCurrentTimestamp() + (int64) rm_enqueue_interval_ms * 1000;
			continue;
		}
		if (GetCurrentTimestamp() >= next_guard)
		{
			next_guard = GetCurrentTimestamp() + (int64) rm_guard_interval_ms * 1000;
			if (run_worker_cycle(CYCLE_GUARD, cycle_memory))
				woken = true;	/* slots may have been freed */
		}
		if (woken || GetCurrentTimestamp() >= next_enqueue)
		{
			next_enqueue = GetCurrentTimestamp() + (int64) rm_enqueue_interval_ms * 1000;
			run_worker_cycle(CYCLE_ENQUEUER, cycle_memory);
		}
		set_activity("waiting");
	}
}
