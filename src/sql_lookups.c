/*
 * sql_lookups.c — registry look-ups for operators (SPEC §2.5, §12.10):
 * registry_import_status(path) and registry_tags_count(path).
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "registry_client.h"

PG_FUNCTION_INFO_V1(rm_registry_import_status);
PG_FUNCTION_INFO_V1(rm_registry_tags_count);

/* Raise the error an unusable or missing answer calls for. */
static void
lookup_failed(const char *what, const char *path, const RegistryAnswer *a)
{
	if (a->answer == ANSWER_UNAVAILABLE)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("registry unavailable while asking for the %s of \"%s\"", what, path),
				 errdetail("%s", a->problem)));
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("unusable registry answer to the %s of \"%s\"", what, path),
			 errdetail("%s", a->problem ? a->problem : answer_class_name(a->answer))));
}

Datum
rm_registry_import_status(PG_FUNCTION_ARGS)
{
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	RegistryAnswer a = registry_call(CALL_STATUS, path);

	if (a.answer == ANSWER_NOT_FOUND)
		PG_RETURN_NULL();
	if (a.answer != ANSWER_OK || a.registry_status == NULL)
		lookup_failed("import status", path, &a);
	PG_RETURN_TEXT_P(cstring_to_text(a.registry_status));
}

Datum
rm_registry_tags_count(PG_FUNCTION_ARGS)
{
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	RegistryAnswer a = registry_count_tags(path, 0);

	if (a.answer == ANSWER_NOT_FOUND)
		PG_RETURN_NULL();
	if (a.answer != ANSWER_OK)
		lookup_failed("tag count", path, &a);
	PG_RETURN_INT64(a.tags);
}
