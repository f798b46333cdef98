/*
 * admin.c — the operator functions that need no registry: skip() and
 * reset() (SPEC §2.5). Both go through the state machine with cause
 * "admin" and return the repository's state afterwards.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "sql_enums.h"
#include "state_machine.h"

PG_FUNCTION_INFO_V1(rm_skip);
PG_FUNCTION_INFO_V1(rm_reset);

/* Lock the repository named by the path argument, or raise P0002. */
static void
lock_named_repository(FunctionCallInfo fcinfo, Repository *repo)
{
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (!repository_lock_by_path(path, repo))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("repository \"%s\" does not exist", path),
				 errdetail("No row of registry_migration.repositories has this path.")));
}

/* Apply an admin event to the repository of argument 0; 55000 when refused. */
static Datum
admin_event(FunctionCallInfo fcinfo, const TransitionRequest *request)
{
	EventNote	note = {.cause = CAUSE_ADMIN};
	Repository	repo;
	MigrationState after;

	SPI_connect();
	lock_named_repository(fcinfo, &repo);
	if (!repository_apply(&repo, request, &note).allowed)
		repository_refused_error(&repo, request->event);
	after = repo.row.state;
	SPI_finish();
	return migration_state_to_datum(fcinfo, after);
}

Datum
rm_skip(PG_FUNCTION_ARGS)
{
	TransitionRequest request = {.event = EV_SKIP, .has_reason = true};

	require_argument(fcinfo, 0, "path");
	require_argument(fcinfo, 1, "reason");
	request.reason = skip_reason_from_datum(PG_GETARG_DATUM(1));
	return admin_event(fcinfo, &request);
}

Datum
rm_reset(PG_FUNCTION_ARGS)
{
	TransitionRequest request = {.event = EV_RESET};

	require_argument(fcinfo, 0, "path");
	return admin_event(fcinfo, &request);
}
