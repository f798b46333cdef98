/*
 * summary_fit.c — a cycle summary cut to fit the worker's status slot.
 *
 * The worker_status view casts the kept summary to jsonb, so a summary cut
 * in the middle would make the view fail for everyone: a long one keeps its
 * scalars, the first elements of each list and the length of every list.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "worker/summary_fit.h"

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
 * Two passes over a long summary: the first writes its frame (counts,
 * scalars, empty lists) to learn how much room is left for elements, the
 * second writes it with the elements that fit in that room.
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
