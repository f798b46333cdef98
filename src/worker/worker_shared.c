/*
 * worker_shared.c — the worker's shared memory, waking it on commit, and
 * the worker_status view's function.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "store/commit_signal.h"
#include "worker/worker_shared.h"

bool		am_registry_migration_worker = false;

static WorkerShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
request_shared(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(WorkerShared)));
}

static void
attach_shared(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("registry_migration worker", sizeof(WorkerShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(*shared));
		SpinLockInit(&shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
worker_shared_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = request_shared;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = attach_shared;
}

WorkerShared *
worker_shared(void)
{
	return shared;
}

void
worker_shared_set_error(const char *message)
{
	int			len = pg_mbcliplen(message, strlen(message), WORKER_TEXT_LEN - 1);
	TimestampTz now = GetCurrentTimestamp();

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	memcpy(shared->last_error, message, len);
	shared->last_error[len] = '\0';
	shared->last_error_at = now;
	SpinLockRelease(&shared->mutex);
}

/* A top-level member of a summary: a scalar (as JSON) or a list. */
typedef struct SummaryMember
{
	char	   *key;
	char	   *json;			/* NULL for a list */
	JsonbContainer *list;
	StringInfoData kept;		/* the list's first elements, those that fit */
} SummaryMember;

static char *
jsonb_value_text(JsonbValue *value)
{
	Jsonb	   *jsonb = JsonbValueToJsonb(value);

	return JsonbToCString(NULL, &jsonb->root, VARSIZE(jsonb));
}

static int
summary_members(Jsonb *summary, SummaryMember **members)
{
	SummaryMember *m = palloc0(sizeof(SummaryMember) * JsonContainerSize(&summary->root));
	JsonbIterator *it = JsonbIteratorInit(&summary->root);
	JsonbIteratorToken token;
	JsonbValue	v;
	int			count = 0;

	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (token == WJB_KEY)
			m[count].key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (token == WJB_VALUE)
		{
			if (v.type == jbvBinary && JsonContainerIsArray(v.val.binary.data))
				m[count].list = v.val.binary.data;
			else
				m[count].json = jsonb_value_text(&v);
			initStringInfo(&m[count].kept);
			count++;
		}
	}
	*members = m;
	return count;
}

/* Keep the first elements of each list, in order, while they fit in room bytes. */
static void
keep_elements(SummaryMember *m, int count, int room)
{
	for (int i = 0; i < count; i++)
	{
		JsonbIterator *it;
		JsonbIteratorToken token;
		JsonbValue	v;

		if (m[i].list == NULL)
			continue;
		it = JsonbIteratorInit(m[i].list);
		while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			char	   *element;
			int			need;

			if (token != WJB_ELEM)
				continue;
			element = jsonb_value_text(&v);
			need = strlen(element) + (m[i].kept.len > 0 ? 1 : 0);
			if (need > room)
				break;
			if (m[i].kept.len > 0)
				appendStringInfoChar(&m[i].kept, ',');
			appendStringInfoString(&m[i].kept, element);
			room -= need;
		}
	}
}

static void
append_trimmed(StringInfo out, const SummaryMember *m, int count)
{
	bool		first = true;

	appendStringInfoString(out, "{\"truncated\":true,\"counts\":{");
	for (int i = 0; i < count; i++)
	{
		if (m[i].list == NULL)
			continue;
		if (!first)
			appendStringInfoChar(out, ',');
		escape_json(out, m[i].key);
		appendStringInfo(out, ":%d", (int) JsonContainerSize(m[i].list));
		first = false;
	}
	appendStringInfoChar(out, '}');
	for (int i = 0; i < count; i++)
	{
		appendStringInfoChar(out, ',');
		escape_json(out, m[i].key);
		appendStringInfoChar(out, ':');
		if (m[i].list == NULL)
			appendStringInfoString(out, m[i].json);
		else
			appendStringInfo(out, "[%s]", m[i].kept.data);
	}
	appendStringInfoChar(out, '}');
}

/*
 * The worker_status view casts the summary to jsonb, so a summary cut in
 * the middle would make the view fail for everyone: a long one keeps its
 * scalars, the first elements of each list and the length of every list.
 */
void
worker_summary_fit(Datum summary, char *buffer)
{
	Jsonb	   *jsonb = DatumGetJsonbP(summary);
	char	   *full = JsonbToCString(NULL, &jsonb->root, VARSIZE(jsonb));
	SummaryMember *members;
	int			count;
	StringInfoData out;

	if (strlen(full) < WORKER_SUMMARY_LEN)
	{
		strcpy(buffer, full);
		return;
	}
	count = summary_members(jsonb, &members);
	initStringInfo(&out);
	append_trimmed(&out, members, count);
	keep_elements(members, count, WORKER_SUMMARY_LEN - 1 - out.len);
	resetStringInfo(&out);
	append_trimmed(&out, members, count);
	/* Only scalars far longer than any summary has could leave it too long. */
	strcpy(buffer, out.len < WORKER_SUMMARY_LEN ? out.data : "{\"truncated\":true}");
}

void
worker_wake(void)
{
	Latch	   *latch = NULL;

	/* The worker's own changes need no wake: it runs the next cycle anyway. */
	if (shared == NULL || am_registry_migration_worker)
		return;
	SpinLockAcquire(&shared->mutex);
	if (shared->pid != 0)
		latch = shared->latch;
	SpinLockRelease(&shared->mutex);
	if (latch)
		SetLatch(latch);
}

PG_FUNCTION_INFO_V1(rm_worker_status);

/* One row about the worker, or none when no worker runs. */
Datum
rm_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WorkerShared copy;
	Datum		values[12];
	bool		nulls[12] = {false};

	InitMaterializedSRF(fcinfo, 0);
	if (shared == NULL)
		return (Datum) 0;
	SpinLockAcquire(&shared->mutex);
	copy = *shared;
	SpinLockRelease(&shared->mutex);
	if (copy.pid == 0)
		return (Datum) 0;

	values[0] = Int32GetDatum(copy.pid);
	values[1] = DirectFunctionCall1(namein, CStringGetDatum(copy.database));
	values[2] = CStringGetTextDatum(copy.activity);
	values[3] = TimestampTzGetDatum(copy.since);
	values[4] = TimestampTzGetDatum(copy.last_guard_at);
	nulls[4] = copy.last_guard_at == 0;
	values[5] = Float8GetDatum(copy.last_guard_ms);
	nulls[5] = nulls[4];
	values[6] = CStringGetTextDatum(copy.last_guard_summary);
	nulls[6] = nulls[4];
	values[7] = TimestampTzGetDatum(copy.last_enqueue_at);
	nulls[7] = copy.last_enqueue_at == 0;
	values[8] = Float8GetDatum(copy.last_enqueue_ms);
	nulls[8] = nulls[7];
	values[9] = CStringGetTextDatum(copy.last_enqueue_summary);
	nulls[9] = nulls[7];
	values[10] = CStringGetTextDatum(copy.last_error);
	nulls[10] = copy.last_error[0] == '\0';
	values[11] = TimestampTzGetDatum(copy.last_error_at);
	nulls[11] = nulls[10];
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(rm_settings_changed);

/*
 * AFTER UPDATE trigger on registry_migration.settings: the worker reads the
 * settings at every cycle, so a change (enabling the migration, raising the
 * capacity) wakes it at commit instead of waiting for its next tick.
 */
Datum
rm_settings_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("settings_changed() must be called as a trigger")));
	commit_signal_raise();
	return PointerGetDatum(NULL);
}
