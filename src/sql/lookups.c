/*
 * lookups.c — registry look-ups for operators, which change nothing:
 * registry_import_status(path), registry_tags_count(path),
 * registry_import_statuses(paths) and registry_request(call, path).
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "registry/registry_client.h"
#include "sql/arguments.h"

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
	char	   *path = path_argument(fcinfo, 0);
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
	char	   *path = path_argument(fcinfo, 0);
	RegistryAnswer a = registry_count_tags(path, 0);

	if (a.answer == ANSWER_NOT_FOUND)
		PG_RETURN_NULL();
	if (a.answer != ANSWER_OK)
		lookup_failed("tag count", path, &a);
	PG_RETURN_INT64(a.tags);
}

PG_FUNCTION_INFO_V1(rm_registry_import_statuses);

/*
 * registry_import_statuses(paths text[]): the import status of many
 * repositories, asked concurrently (at most max_concurrent_requests at a
 * time). One row per path, in order; a failed request is a row with its
 * problem, not an error.
 */
Datum
rm_registry_import_statuses(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *array = PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *elements;
	bool	   *nulls;
	int			n;
	const char **paths;
	RegistryAnswer *answers;

	InitMaterializedSRF(fcinfo, 0);
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elements, &nulls, &n);
	paths = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("paths must not contain NULL")));
		path_require_valid(DatumGetTextPP(elements[i]), ERRCODE_INVALID_PARAMETER_VALUE);
		paths[i] = TextDatumGetCString(elements[i]);
	}
	answers = palloc(sizeof(RegistryAnswer) * Max(n, 1));
	registry_status_many(paths, n, answers);

	for (int i = 0; i < n; i++)
	{
		Datum		values[5];
		bool		isnull[5] = {false};
		RegistryAnswer *a = &answers[i];

		values[0] = CStringGetTextDatum(paths[i]);
		isnull[1] = a->registry_status == NULL;
		values[1] = isnull[1] ? (Datum) 0 : CStringGetTextDatum(a->registry_status);
		values[2] = CStringGetTextDatum(answer_class_name(a->answer));
		isnull[3] = a->http_status == 0;
		values[3] = Int32GetDatum((int32) a->http_status);
		isnull[4] = a->problem == NULL;
		values[4] = isnull[4] ? (Datum) 0 : CStringGetTextDatum(a->problem);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(rm_registry_request);

static const struct
{
	const char *name;
	RegistryCall call;
}			call_names[] = {
	{"start_pre_import", CALL_START_PRE_IMPORT},
	{"start_import", CALL_START_IMPORT},
	{"cancel", CALL_CANCEL},
	{"force_cancel", CALL_FORCE_CANCEL},
	{"status", CALL_STATUS},
	{"tags", CALL_TAGS},
};

static RegistryCall
call_from_name(const char *name)
{
	for (int i = 0; i < lengthof(call_names); i++)
		if (strcmp(call_names[i].name, name) == 0)
			return call_names[i].call;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown registry call \"%s\"", name),
			 errhint("Use start_pre_import, start_import, cancel, force_cancel, status or tags.")));
	return CALL_STATUS;			/* not reached */
}

/*
 * registry_request(call, path): send one request of the registry API and
 * show how the extension reads the answer. For troubleshooting: it does not
 * change the repository's row (the guard reconciles what the registry does).
 */
Datum
rm_registry_request(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *path = path_argument(fcinfo, 1);
	RegistryCall call = call_from_name(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	RegistryAnswer a = call == CALL_TAGS ? registry_count_tags(path, 0) : registry_call(call, path);
	Datum		values[6];
	bool		isnull[6] = {false};

	InitMaterializedSRF(fcinfo, 0);
	values[0] = CStringGetTextDatum(answer_class_name(a.answer));
	isnull[1] = a.http_status == 0;
	values[1] = Int32GetDatum((int32) a.http_status);
	isnull[2] = a.registry_status == NULL;
	values[2] = isnull[2] ? (Datum) 0 : CStringGetTextDatum(a.registry_status);
	isnull[3] = a.tags < 0;
	values[3] = Int64GetDatum(a.tags);
	isnull[4] = !a.has_retry_after;
	values[4] = Int64GetDatum(a.retry_after_s);
	isnull[5] = a.problem == NULL;
	values[5] = isnull[5] ? (Datum) 0 : CStringGetTextDatum(a.problem);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	return (Datum) 0;
}
