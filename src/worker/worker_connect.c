/*
 * worker_connect.c — connecting as the worker's role, with back-off.
 *
 * A wrong role or database makes every connection attempt fail, and the
 * postmaster restarts a failed worker every WORKER_RESTART_S: without a
 * back-off that is a restart loop filling the log. The failures are counted
 * in shared memory, which outlives the restarted process.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "worker/worker_connect.h"
#include "worker/worker_shared.h"
#include "worker/worker_wait.h"

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

static emit_log_hook_type prev_emit_log_hook = NULL;

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
		const char *reason = edata->message ? edata->message : "unknown error";

		if (rm_worker_role_named())
			snprintf(message, sizeof(message), "could not connect to database \"%s\" as role \"%s\": %s",
					 rm_database, rm_worker_role, reason);
		else
			snprintf(message, sizeof(message), "could not connect to database \"%s\": %s",
					 rm_database, reason);
		worker_shared_set_error(WORKER_ERROR_CONNECTION, message);
		worker_shared_set_connect_failures(worker_shared_connect_failures() + 1);
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* WORKER_RESTART_S doubled for each failure after the first, up to the maximum. */
static int
reconnect_delay_s(int failures)
{
	int			delay_s = WORKER_RESTART_S;

	for (int i = 1; i < failures && delay_s < RECONNECT_DELAY_MAX_S; i++)
		delay_s *= 2;
	return Min(delay_s, RECONNECT_DELAY_MAX_S);
}

/*
 * Wait longer after each failed attempt, so that a wrong role or database
 * is one error every few minutes. The wait shows in worker_status; a
 * configuration reload (after fixing the role) ends it.
 */
static void
wait_before_reconnecting(int failures)
{
	char		activity[WORKER_ACTIVITY_LEN];
	int			delay_s = reconnect_delay_s(failures);
	TimestampTz until;

	if (rm_worker_role_named())
		snprintf(activity, sizeof(activity), "waiting to retry connecting as role \"%s\"", rm_worker_role);
	else
		snprintf(activity, sizeof(activity), "waiting to retry connecting to database \"%s\"", rm_database);
	worker_shared_set_activity(activity);
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
		bool		reloaded;

		(void) worker_wait(ms_until(until), &reloaded);
		if (reloaded)
			break;
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
	worker_shared_set_activity("idle: registry_migration.worker_role has an invalid value");
	worker_shared_set_error(WORKER_ERROR_CONNECTION,
							"registry_migration.worker_role was refused when the server started; "
							"the worker does not connect until it is corrected and the server restarted");
	ereport(WARNING,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("registry_migration worker does not connect: registry_migration.worker_role has an invalid value"),
			 errdetail("Connecting as the bootstrap superuser in its place would defeat the setting."),
			 errhint("Correct registry_migration.worker_role and restart the server.")));
	for (;;)
		(void) worker_wait(-1, NULL);
}

void
worker_connect(void)
{
	int			failures = worker_shared_connect_failures();

	if (rm_worker_role_refused)
		stay_unconnected();

	if (failures > 0)
		wait_before_reconnecting(failures);
	worker_shared_set_activity("connecting");
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = keep_connection_error;
	BackgroundWorkerInitializeConnection(rm_database, rm_worker_role_named() ? rm_worker_role : NULL, 0);
	emit_log_hook = prev_emit_log_hook;
	worker_shared_set_connect_failures(0);
	worker_shared_connected();
	SetConfigOption("search_path", WORKER_SEARCH_PATH, PGC_SUSET, PGC_S_OVERRIDE);
	if (failures > 0)
		ereport(LOG,
				(errmsg("registry_migration worker connected to database \"%s\" after %d failed attempts",
						rm_database, failures)));
}
