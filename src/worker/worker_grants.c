/*
 * worker_grants.c — checking the worker's role before each cycle.
 *
 * A cycle isolates each repository's errors, so a missing grant would
 * otherwise show only as one error per repository in the summary (or, for
 * the event log, after a request was already sent), not as the worker's
 * own error. Both checks run at every tick, so that fixing the role (ALTER
 * ROLE ... NOSUPERUSER, a GRANT) takes effect without a restart.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "guc.h"
#include "worker/worker_grants.h"
#include "worker/worker_shared.h"

/*
 * Running as a superuser is what worker_role exists to avoid, so a
 * superuser role is refused; reported once, not at every tick.
 */
bool
worker_role_is_superuser(void)
{
	static bool reported = false;
	bool		refused = rm_worker_role_named() && superuser_arg(GetUserId());

	if (refused && !reported)
	{
		char		message[WORKER_TEXT_LEN];

		snprintf(message, sizeof(message),
				 "registry_migration.worker_role \"%s\" is a superuser", rm_worker_role);
		worker_shared_set_error(WORKER_ERROR_CONNECTION, message);
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

/*
 * What removing old events reads, and what finding a start whose answer was
 * lost and a failure notification held for confirmation read.
 */
static const char *const event_select_columns[] = {
	"id", "at", "repository_id", "old_state", "new_state", "event", "registry_status", NULL
};

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

void
require_worker_grants(void)
{
	Oid			schema = get_namespace_oid("registry_migration", false);

	for (int i = 0; i < lengthof(worker_grants); i++)
		require_grant(schema, &worker_grants[i]);
}
