/*
 * notification.c — SQL entry point handle_notification(path, status): what
 * the application calls when the registry reports the end of a step.
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "control/notifications.h"
#include "sql/arguments.h"
#include "sql/enum_datums.h"

PG_FUNCTION_INFO_V1(rm_handle_notification);

/* "Valid statuses: a, b, ...": the statuses that end a step, in enum order. */
static char *
valid_statuses_hint(void)
{
	StringInfoData hint;
	const char *separator = "Valid statuses: ";

	initStringInfo(&hint);
	for (int i = 0; i < RS_COUNT; i++)
	{
		if (!registry_status_ends_step((RegistryStatus) i))
			continue;
		appendStringInfo(&hint, "%s%s", separator, registry_status_name((RegistryStatus) i));
		separator = ", ";
	}
	appendStringInfoChar(&hint, '.');
	return hint.data;
}

Datum
rm_handle_notification(PG_FUNCTION_ARGS)
{
	char	   *path;
	char	   *status_text;
	RegistryStatus status;

	require_argument(fcinfo, 0, "path");
	require_argument(fcinfo, 1, "status");
	path = path_argument(fcinfo, 0);
	status_text = text_to_cstring(PG_GETARG_TEXT_PP(1));
	status = registry_status_parse(status_text);
	if (!registry_status_ends_step(status))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid notification status \"%s\"", status_text),
				 errhint("%s", valid_statuses_hint())));
	PG_RETURN_DATUM(migration_state_to_datum(fcinfo,
											 notification_handle(path, status, status_text)));
}
