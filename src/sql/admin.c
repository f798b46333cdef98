/*
 * admin.c — the operator functions: skip() and reset(), which need no
 * registry, and cancel() and retry(), which do. All go through the state
 * machine with cause "admin" and return the repository's state afterwards.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "control/retry.h"
#include "registry/registry_client.h"
#include "sql/arguments.h"
#include "sql/enum_datums.h"
#include "store/backoff.h"
#include "store/settings.h"
#include "store/state_machine.h"

PG_FUNCTION_INFO_V1(rm_skip);
PG_FUNCTION_INFO_V1(rm_reset);
PG_FUNCTION_INFO_V1(rm_cancel);
PG_FUNCTION_INFO_V1(rm_retry);

/*
 * The repository with this path, locked or not, or P0002. cancel() and
 * retry() read it without a lock: its row is locked only to apply the
 * registry's answer, which fails with 40001 if it changed meanwhile.
 */
static void
find_named_repository(const char *path, bool lock, Repository *repo)
{
	if (!(lock ? repository_lock_by_path(path, repo) : repository_read_by_path(path, repo)))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("repository \"%s\" does not exist", path),
				 errdetail("No row of registry_migration.repositories has this path.")));
}

/* Apply an event to the locked repository; 55000 when refused. */
static void
admin_apply(Repository *repo, const TransitionRequest *request, const EventNote *note)
{
	MigrationSettings settings = settings_load();

	repository_apply_or_error(repo, request, note, &settings);
}

/* Apply an admin event to the repository at path; 55000 when refused. */
static Datum
admin_event(FunctionCallInfo fcinfo, const char *path, const TransitionRequest *request)
{
	EventNote	note = {.cause = CAUSE_ADMIN};
	Repository	repo;
	MigrationState after;

	SPI_connect();
	find_named_repository(path, true, &repo);
	admin_apply(&repo, request, &note);
	after = repo.row.state;
	SPI_finish();
	return migration_state_to_datum(fcinfo, after);
}

Datum
rm_skip(PG_FUNCTION_ARGS)
{
	TransitionRequest request = {.event = EV_SKIP, .has_reason = true};

	char	   *path;

	require_argument(fcinfo, 0, "path");
	require_argument(fcinfo, 1, "reason");
	path = path_argument(fcinfo, 0);
	request.reason = skip_reason_from_datum(PG_GETARG_DATUM(1));
	return admin_event(fcinfo, path, &request);
}

Datum
rm_reset(PG_FUNCTION_ARGS)
{
	TransitionRequest request = {.event = EV_RESET};
	EventNote	note = {.cause = CAUSE_ADMIN};
	Repository	repo;
	char	   *path;

	require_argument(fcinfo, 0, "path");
	path = path_argument(fcinfo, 0);
	SPI_connect();
	find_named_repository(path, true, &repo);
	admin_apply(&repo, &request, &note);
	/* A reset repository starts afresh: no 429s counted against it. */
	repository_set_consecutive_429s(&repo, 0);
	SPI_finish();
	return migration_state_to_datum(fcinfo, MS_DEFAULT);
}

/* Raise 08006: the registry could not answer; nothing changed. */
static void
registry_unavailable_error(const char *what, const char *path, const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("registry unavailable while trying to %s repository \"%s\"", what, path),
			 errdetail("%s", problem)));
}

Datum
rm_cancel(PG_FUNCTION_ARGS)
{
	bool		force;
	Repository	repo;
	TransitionRequest request = {.event = EV_ABORT};
	EventNote	note = {.cause = CAUSE_ADMIN};
	RegistryAnswer a;
	MigrationState after;
	char	   *path;

	require_argument(fcinfo, 0, "path");
	require_argument(fcinfo, 1, "force");
	path = path_argument(fcinfo, 0);
	force = PG_GETARG_BOOL(1);
	if (force)
		request = (TransitionRequest) {.event = EV_SKIP, .has_reason = true,
		.reason = SR_MIGRATION_FORCED_CANCELED};

	SPI_connect();
	find_named_repository(path, false, &repo);
	/* Refused before asking the registry: nothing to cancel from here. */
	if (!event_allowed(request.event, repo.row.state))
		repository_refused_error(&repo, request.event);
	a = registry_call(force ? CALL_FORCE_CANCEL : CALL_CANCEL, repo.path);
	if (a.answer == ANSWER_UNAVAILABLE)
		registry_unavailable_error("cancel", repo.path, a.problem);
	if (a.answer != ANSWER_ACCEPTED)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the registry did not accept the cancel of repository \"%s\"", repo.path),
				 errdetail("The registry answered: %s.",
						   a.problem ? a.problem : answer_class_name(a.answer))));
	note.http_status = (int) a.http_status;
	note.detail = force ? "forced cancel by an operator" : "canceled by an operator";
	admin_apply(&repo, &request, &note);
	after = repo.row.state;
	SPI_finish();
	return migration_state_to_datum(fcinfo, after);
}

/*
 * retry() obeys the master switch and a pending Retry-After, as the
 * enqueuer does, and retries only an aborted repository.
 */
static void
check_retry_allowed(const MigrationSettings *s, const Repository *repo)
{
	TimestampTz until;

	if (!s->enabled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the migration is disabled"),
				 errhint("UPDATE registry_migration.settings SET enabled = true.")));
	if (backoff_pending(&until))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the registry asked to wait until %s", timestamptz_to_str(until)),
				 errdetail("It answered \"too many imports\" with a Retry-After.")));
	if (repo->row.state != MS_IMPORT_ABORTED)
		repository_refused_error(repo, EV_START_PRE_IMPORT);
}

static bool
root_namespace_denied(const Repository *repo)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(repo->path)};

	if (SPI_execute_with_args("SELECT FROM registry_migration.denied_namespaces"
							  " WHERE root_namespace = split_part($1, '/', 1)",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the deny list");
	return SPI_processed > 0;
}

Datum
rm_retry(PG_FUNCTION_ARGS)
{
	MigrationSettings settings;
	Repository	repo;
	RegistryAnswer status;
	CycleSummary summary;
	HandleOutcome outcome;
	MigrationState after;
	char	   *path;

	require_argument(fcinfo, 0, "path");
	path = path_argument(fcinfo, 0);
	summary_init(&summary, CYCLE_ENQUEUER);
	SPI_connect();
	settings = settings_load();
	find_named_repository(path, false, &repo);
	check_retry_allowed(&settings, &repo);
	if (root_namespace_denied(&repo))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the root namespace of repository \"%s\" is in the deny list", repo.path)));
	status = registry_call(CALL_STATUS, repo.path);
	if (status.answer == ANSWER_UNAVAILABLE)
		registry_unavailable_error("retry", repo.path, status.problem);
	outcome = retry_aborted(&repo, &status, &settings, CAUSE_ADMIN, &summary);
	/* The status was answered; it is the start that got no usable answer. */
	if (outcome == HANDLED_FAILED_ANSWER || outcome == HANDLED_REGISTRY_DOWN)
		registry_unavailable_error("retry", repo.path,
								   outcome == HANDLED_REGISTRY_DOWN
								   ? "The start request could not reach the registry."
								   : "The start request got no usable answer.");
	if (outcome == HANDLED_NOT_READY)
		ereport(WARNING,
				(errmsg("the registry is not ready to import repository \"%s\" yet; it was not retried",
						repo.path),
				 errhint("A canceled import may still be winding down; the enqueuer retries it later.")));
	if (outcome == HANDLED_FINAL_IMPORT_DUE)
		ereport(NOTICE,
				(errmsg("the pre-import of repository \"%s\" had finished on the registry",
						repo.path),
				 errdetail("Its final import is requested by the next enqueue cycle.")));
	if (outcome == HANDLED_TOO_MANY_IMPORTS)
		ereport(WARNING,
				(errmsg("the registry is running too many imports; repository \"%s\" was not retried",
						repo.path),
				 errhint("The enqueuer retries it when the registry has room.")));
	after = repo.row.state;
	SPI_finish();
	return migration_state_to_datum(fcinfo, after);
}
